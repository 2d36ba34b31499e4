package ratelimit

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// problem is an RFC 9457 problem details body. ViolatedPolicies is the
// extension member that draft-ietf-httpapi-ratelimit-headers defines for
// its quota-exceeded problem type: the names of the policies whose quota
// was exceeded.
type problem struct {
	Type             string   `json:"type"`
	Title            string   `json:"title"`
	Status           int      `json:"status"`
	Detail           string   `json:"detail"`
	ViolatedPolicies []string `json:"violated-policies,omitempty"`
}

// writeProblem answers with p and an application/problem+json body.
func writeProblem(w http.ResponseWriter, p problem) {
	status := p.Status
	body, err := json.Marshal(p)
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
