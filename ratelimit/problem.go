package ratelimit

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// problem is an RFC 9457 problem details body.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// writeProblem answers with status and an application/problem+json body.
func writeProblem(w http.ResponseWriter, status int, typ, title, detail string) {
	body, err := json.Marshal(problem{Type: typ, Title: title, Status: status, Detail: detail})
	if err != nil { // cannot happen: every field is a string or an int
		body = []byte(`{"status":` + strconv.Itoa(status) + `}`)
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
