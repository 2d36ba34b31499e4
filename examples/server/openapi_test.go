package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	legacyrouter "github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"
)

// The document describes every route the server serves, each once, with
// a unique operationId, and kin-openapi finds it valid (startServer checks
// that). This is what keeps the document and the handlers from drifting:
// both come from the same table.
func TestOpenAPIDocumentCoversEveryRoute(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", nil)
	require.Equal(t, "3.0.3", ts.doc.OpenAPI)
	ids := map[string]bool{}
	for path, item := range ts.doc.Paths.Map() {
		for method, op := range item.Operations() {
			require.NotEmpty(t, op.OperationID, "%s %s", method, path)
			require.False(t, ids[op.OperationID], "operationId %s used twice", op.OperationID)
			ids[op.OperationID] = true
			require.NotEmpty(t, op.Summary, "%s", op.OperationID)
			require.NotEmpty(t, op.Responses.Map(), "%s", op.OperationID)
		}
	}
	for _, id := range []string{"createUser", "getUser", "updateUser", "deleteUser", "searchUsers", "exportUsers", "bulkCreateUsers",
		"createAccount", "getAccount", "createTransfer", "runBatch", "healthz", "readyz", "dbPoolStatus", "metrics", "openapi", "docs"} {
		require.True(t, ids[id], "the document has no operation %s", id)
	}
}

// The validation every end-to-end test relies on can fail: an answer with
// an undocumented status, a missing required field, a field of the wrong
// type or an unknown field is refused.
func TestOpenAPIValidationRefusesWhatTheDocumentDoesNotSay(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", nil)
	router, err := legacyrouter.NewRouter(ts.doc)
	require.NoError(t, err)
	good := `{"id":1,"username":"ada","email":"ada@example.com","full_name":"Ada","version":1,"created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z"}`
	validate := func(status int, contentType, body string) error {
		req := httptest.NewRequest("GET", "/users/1", nil)
		route, params, err := router.FindRoute(req)
		require.NoError(t, err)
		h := http.Header{"Content-Type": {contentType}}
		return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
			Status:                 status, Header: h, Body: io.NopCloser(bytes.NewReader([]byte(body))),
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		})
	}
	require.NoError(t, validate(200, "application/json", good))
	for name, c := range map[string]struct {
		status int
		ct     string
		body   string
	}{
		"an undocumented status":  {418, "application/json", good},
		"a missing field":         {200, "application/json", strings.Replace(good, `"email":"ada@example.com",`, "", 1)},
		"a field of another type": {200, "application/json", strings.Replace(good, `"id":1`, `"id":"1"`, 1)},
		"an unknown field":        {200, "application/json", strings.Replace(good, `{`, `{"extra":true,`, 1)},
		"a problem not a user":    {200, "application/json", `{"type":"/docs/problems/not-found","title":"Not found","status":404}`},
	} {
		require.Error(t, validate(c.status, c.ct, c.body), name)
	}
}
