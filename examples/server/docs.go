package main

import "net/http"

// docs renders the OpenAPI document for a browser.
func (s *server) docs(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte("<!doctype html><title>asynckit example service</title><p>See <a href=\"/openapi.json\">/openapi.json</a>.</p>"))
}
