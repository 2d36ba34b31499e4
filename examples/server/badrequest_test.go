package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	legacyrouter "github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/pagination"
	"github.com/asynckit/asynckit/taskqueue"
)

// badRequest is a request that must be refused, and how.
type badRequest struct {
	name         string
	method, path string
	body         any         // as testServer.do takes it; nil sends none
	header       http.Header // sent as it is, empty values too; a nil value leaves the header out
	status       int
	kind         string // the problem type's slug; "" for any
	check        func(t *testing.T, r *response, p problem)
}

// maxBodyForTests is the MAX_BODY of TestBadRequests: small enough that a
// test body can pass it, large enough for 1,001 users or operations.
const maxBodyForTests = 96 << 10

// TestBadRequests sends every route requests that are wrong in every way a
// client can get one wrong, and checks that each gets its documented 4xx
// with a problem body, and that none of them changed any data or started
// a task.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	forEachDB(t, map[string]string{"MAX_BODY": fmt.Sprint(maxBodyForTests), "MAX_UPLOAD": fmt.Sprint(maxUploadForTests)}, func(t *testing.T, ts *testServer) {
		var ada, bob user
		ts.do("POST", "/users", userInput{Username: "ada", Email: "ada@example.com", FullName: "Ada"}).json(t, &ada)
		ts.do("POST", "/users", userInput{Username: "bob", Email: "bob@example.com", FullName: "Bob"}).json(t, &bob)
		var rich, poor account
		ts.do("POST", "/accounts", map[string]any{"user_id": ada.ID, "balance": 1000}).json(t, &rich)
		ts.do("POST", "/accounts", map[string]any{"balance": 0}).json(t, &poor)
		require.Positive(t, rich.ID)
		require.Positive(t, poor.ID)

		var done taskqueue.Info
		r := ts.do("POST", "/tasks", `{"kind":"demo","payload":{"steps":1,"step_ms":0}}`)
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		r.json(t, &done)
		require.Eventually(t, func() bool {
			ts.do("GET", "/tasks/"+done.ID, nil).json(t, &done)
			return done.Status == taskqueue.StatusSucceeded
		}, 10*time.Second, 5*time.Millisecond)

		before := snapshot(t, ts, poor.ID)
		rows := append(badRequests(ada, bob, rich, poor), badTaskRequests(done)...)
		checkCoverage(t, ts, rows)
		for _, row := range rows {
			t.Run(row.name, func(t *testing.T) {
				r := ts.send(row.method, row.path, row.body, row.header)
				require.Equal(t, row.status, r.status, "body: %s", r.body)
				p := r.problem(t)
				if row.kind != "" {
					require.Equal(t, problemTypePrefix+row.kind, p.Type, "detail: %s", p.Detail)
				}
				if row.check != nil {
					row.check(t, r, p)
				}
			})
		}
		require.Equal(t, before, snapshot(t, ts, poor.ID), "a refused request changed the data")
	})
}

// badRequests returns the table, for the users and accounts the test
// made: ada owns rich (1000), bob owns nothing, poor (0) has no owner.
func badRequests(ada, bob user, rich, poor account) []badRequest {
	userURL := fmt.Sprintf("/users/%d", ada.ID)
	bobURL := fmt.Sprintf("/users/%d", bob.ID)
	richURL := fmt.Sprintf("/accounts/%d", rich.ID)
	validUser := `{"username":"newbie","email":"newbie@example.com","full_name":"New Bie"}`
	validTransfer := fmt.Sprintf(`{"from_account":%d,"to_account":%d,"amount":1}`, rich.ID, poor.ID)
	// A valid body for every route that takes one: each row below spoils
	// one thing about it, so a check that let it through would show in
	// the data.
	jsonRoutes := []struct{ method, path, valid string }{
		{"POST", "/users", validUser},
		{"PUT", userURL, validUser},
		{"POST", "/users/bulk", `{"users":[` + validUser + `]}`},
		{"POST", "/accounts", `{"balance":5}`},
		{"POST", "/transfers", validTransfer},
		{"POST", "/batch", `{"operations":[{"op":"transfer","from_account":` + fmt.Sprint(rich.ID) + `,"to_account":` + fmt.Sprint(poor.ID) + `,"amount":1}]}`},
	}
	var rows []badRequest
	add := func(name, method, path string, body any, status int, kind string, header ...string) *badRequest {
		h := http.Header{}
		for i := 0; i+1 < len(header); i += 2 {
			h[header[i]] = append(h[header[i]], header[i+1])
		}
		rows = append(rows, badRequest{name: method + " " + path + ": " + name, method: method, path: path, body: body, header: h, status: status, kind: kind})
		return &rows[len(rows)-1]
	}
	noContentType := func(r *badRequest) { r.header["Content-Type"] = nil }
	naming := func(fields ...string) func(t *testing.T, r *response, p problem) {
		return func(t *testing.T, r *response, p problem) {
			var got []string
			for _, e := range p.Errors {
				got = append(got, e.Field)
			}
			require.Subset(t, got, fields, "detail: %s", p.Detail)
		}
	}

	// What every JSON body can get wrong.
	for _, rt := range jsonRoutes {
		m, p, v := rt.method, rt.path, rt.valid
		add("malformed JSON is 400", m, p, v[:len(v)-3], 400, "bad-request")
		add("a syntax error is 400", m, p, `{"a" 1}`, 400, "bad-request")
		add("an unknown field is 400", m, p, v[:len(v)-1]+`,"zzz":1}`, 400, "bad-request").check = naming("zzz")
		add("trailing data is 400", m, p, v+` {}`, 400, "bad-request")
		add("trailing garbage is 400", m, p, v+`x`, 400, "bad-request")
		add("an empty body is 400", m, p, "", 400, "bad-request")
		add("a blank body is 400", m, p, " \n\t ", 400, "bad-request")
		add("no body at all is 400", m, p, nil, 400, "bad-request", "Content-Type", "application/json")
		add("a JSON null body is 400", m, p, `null`, 400, "bad-request")
		add("a JSON array body is 400", m, p, `[`+v+`]`, 400, "bad-request")
		add("a JSON string body is 400", m, p, `"`+strings.ReplaceAll(v, `"`, `\"`)+`"`, 400, "bad-request")
		add("an empty object is 400", m, p, `{}`, 400, "bad-request")
		add("deeply nested JSON is 400", m, p, strings.Repeat(`{"a":`, 12000)+"1"+strings.Repeat("}", 12000), 400, "")
		add("a body over MAX_BODY is 413", m, p, `{"x":"`+strings.Repeat("x", maxBodyForTests)+`"}`, 413, "payload-too-large")
		add("text/plain is 415", m, p, v, 415, "unsupported-media-type", "Content-Type", "text/plain")
		noContentType(add("no Content-Type is 415", m, p, v, 415, "unsupported-media-type"))
		add("a form is 415", m, p, "a=1", 415, "unsupported-media-type", "Content-Type", "application/x-www-form-urlencoded")
		add("a charset other than UTF-8 is 415", m, p, v, 415, "unsupported-media-type", "Content-Type", "application/json; charset=latin1")
		add("a malformed Content-Type is 415", m, p, v, 415, "unsupported-media-type", "Content-Type", "application/json; charset")
	}

	// What an Idempotency-Key can get wrong, on valid requests that must
	// therefore not run.
	for _, rt := range jsonRoutes {
		if rt.path == "/users/bulk" {
			continue // not idempotent: the key is ignored
		}
		m, p, v := rt.method, rt.path, rt.valid
		add("an empty Idempotency-Key is 400", m, p, v, 400, "validation-error", "Idempotency-Key", "").check = naming("Idempotency-Key")
		add("an Idempotency-Key of 256 bytes is 400", m, p, v, 400, "validation-error", "Idempotency-Key", strings.Repeat("k", 256))
		add("an Idempotency-Key that is not ASCII is 400", m, p, v, 400, "validation-error", "Idempotency-Key", "clé")
		add("two Idempotency-Keys are 400", m, p, v, 400, "validation-error", "Idempotency-Key", "one", "Idempotency-Key", "two")
	}

	// What an X-Client-ID can get wrong, on every rate-limited route, with
	// requests that are otherwise valid.
	clientRoutes := append([]struct{ method, path, valid string }{
		{"GET", "/users", ""}, {"GET", "/users/export", ""}, {"GET", userURL, ""}, {"DELETE", bobURL, ""},
		{"GET", richURL, ""}, {"GET", "/aggregate", ""},
	}, jsonRoutes...)
	for _, rt := range clientRoutes {
		var body any
		if rt.valid != "" {
			body = rt.valid
		}
		m, p := rt.method, rt.path
		add("an empty X-Client-ID is 400", m, p, body, 400, "bad-request", "X-Client-ID", "")
		add("an X-Client-ID of 129 bytes is 400", m, p, body, 400, "bad-request", "X-Client-ID", strings.Repeat("c", 129))
		add("an X-Client-ID with a space is 400", m, p, body, 400, "bad-request", "X-Client-ID", "two words")
		add("an X-Client-ID that is not ASCII is 400", m, p, body, 400, "bad-request", "X-Client-ID", "café")
		add("two X-Client-IDs are 400", m, p, body, 400, "bad-request", "X-Client-ID", "a", "X-Client-ID", "b")
	}

	// Users.
	add("a wrong type is 400", "POST", "/users", `{"username":5,"email":"a@example.com","full_name":"A"}`, 400, "bad-request").check = naming("username")
	add("a missing field is 400", "POST", "/users", `{"username":"newbie","full_name":"A"}`, 400, "bad-request").check = naming("email")
	add("null for a required field is 400", "POST", "/users", `{"username":"newbie","email":null,"full_name":"A"}`, 400, "bad-request").check = naming("email")
	add("a username against the pattern is 400", "POST", "/users", `{"username":"Ada!","email":"n@example.com","full_name":"A"}`, 400, "validation-error").check = naming("username")
	add("a username too short is 400", "POST", "/users", `{"username":"ab","email":"n@example.com","full_name":"A"}`, 400, "validation-error").check = naming("username")
	add("a username too long is 400", "POST", "/users", `{"username":"`+strings.Repeat("a", 33)+`","email":"n@example.com","full_name":"A"}`, 400, "validation-error").check = naming("username")
	add("an invalid email is 400", "POST", "/users", `{"username":"newbie","email":"not-an-email","full_name":"A"}`, 400, "validation-error").check = naming("email")
	add("an email with a display name is 400", "POST", "/users", `{"username":"newbie","email":"New <n@example.com>","full_name":"A"}`, 400, "validation-error").check = naming("email")
	add("an email too long is 400", "POST", "/users", `{"username":"newbie","email":"`+strings.Repeat("e", 250)+`@example.com","full_name":"A"}`, 400, "validation-error").check = naming("email")
	add("a blank full name is 400", "POST", "/users", `{"username":"newbie","email":"n@example.com","full_name":"   "}`, 400, "validation-error").check = naming("full_name")
	add("a full name with a control character is 400", "POST", "/users", `{"username":"newbie","email":"n@example.com","full_name":"A\u0007B"}`, 400, "validation-error").check = naming("full_name")
	add("a full name too long is 400", "POST", "/users", `{"username":"newbie","email":"n@example.com","full_name":"`+strings.Repeat("é", 101)+`"}`, 400, "validation-error").check = naming("full_name")
	add("every invalid field is listed", "POST", "/users", `{"username":"!","email":"x","full_name":""}`, 400, "validation-error").check = naming("username", "email", "full_name")
	add("a taken username is 409", "POST", "/users", `{"username":"ada","email":"other@example.com","full_name":"A"}`, 409, "conflict")
	add("a taken email is 409", "POST", "/users", `{"username":"other","email":"ADA@example.com","full_name":"A"}`, 409, "conflict")
	add("an invalid username is 400", "PUT", userURL, `{"username":"A","email":"ada@example.com","full_name":"Ada"}`, 400, "validation-error")
	add("another user's username is 409", "PUT", userURL, `{"username":"bob","email":"ada@example.com","full_name":"Ada"}`, 409, "conflict")
	add("a missing field is 400", "PUT", userURL, `{"username":"ada","email":"ada@example.com"}`, 400, "bad-request").check = naming("full_name")
	for _, id := range []string{"abc", "0", "-1", "1.5", "99999999999999999999", "%20"} {
		add("malformed id "+id+" is 400", "GET", "/users/"+id, nil, 400, "validation-error").check = naming("id")
		add("malformed id "+id+" is 400", "PUT", "/users/"+id, validUser, 400, "validation-error")
		add("malformed id "+id+" is 400", "DELETE", "/users/"+id, nil, 400, "validation-error")
		add("malformed id "+id+" is 400", "GET", "/accounts/"+id, nil, 400, "validation-error")
	}
	add("an unknown id is 404", "GET", "/users/999999", nil, 404, "not-found")
	add("an unknown id is 404", "PUT", "/users/999999", validUser, 404, "not-found")
	add("an unknown id is 404", "DELETE", "/users/999999", nil, 404, "not-found")
	add("a user who owns an account is 409", "DELETE", userURL, nil, 409, "conflict")
	add("an unknown id is 404", "GET", "/accounts/999999", nil, 404, "not-found")
	for _, q := range []string{"limit=0", "limit=-1", "limit=%2B5", "limit=007", "limit=abc", "limit=1.5", "limit=99999999999999999999"} {
		add("a bad "+q+" is 400", "GET", "/users?"+q, nil, 400, "validation-error").check = naming("limit")
	}
	for _, q := range []string{"cursor=abc", "cursor=" + strings.Repeat("A", 2000), "cursor=eyJpZCI6MX0"} {
		add("a bad "+q[:min(len(q), 20)]+" is 400", "GET", "/users?"+q, nil, 400, "invalid-cursor")
	}
	add("a q over 100 characters is 400", "GET", "/users?q="+strings.Repeat("q", 101), nil, 400, "validation-error").check = naming("q")
	add("a malformed query string is 400", "GET", "/users?q=%zz", nil, 400, "bad-request")
	add("a malformed query string is 400", "GET", "/tasks?status=%zz", nil, 400, "bad-request")

	// Bulk.
	add("invalid rows are 422, listed by index", "POST", "/users/bulk", `{"users":[`+validUser+`,{"username":"X","email":"x@example.com","full_name":"X"},{"username":"okay","email":"bad","full_name":"O"}]}`, 422, "invalid-rows").
		check = func(t *testing.T, r *response, p problem) {
		require.Len(t, p.Errors, 2)
		require.Equal(t, 1, *p.Errors[0].Index)
		require.Equal(t, "username", p.Errors[0].Field)
		require.Equal(t, 2, *p.Errors[1].Index)
		require.Equal(t, "email", p.Errors[1].Field)
	}
	add("rows repeating each other are 422", "POST", "/users/bulk", `{"users":[`+validUser+`,`+validUser+`]}`, 422, "invalid-rows").
		check = func(t *testing.T, r *response, p problem) {
		require.Equal(t, 1, *p.Errors[0].Index)
	}
	add("a taken username is 422", "POST", "/users/bulk", `{"users":[`+validUser+`,{"username":"ada","email":"ada2@example.com","full_name":"A"}]}`, 422, "invalid-rows").
		check = func(t *testing.T, r *response, p problem) {
		require.Len(t, p.Errors, 1)
		require.Equal(t, 1, *p.Errors[0].Index)
	}
	add("over 1000 users is 400", "POST", "/users/bulk", bulkOf(1001), 400, "validation-error").check = naming("users")
	add("no users is 400", "POST", "/users/bulk", `{"users":[]}`, 400, "validation-error").check = naming("users")
	add("null users is 400", "POST", "/users/bulk", `{"users":null}`, 400, "bad-request").check = naming("users")
	add("a null row is 400", "POST", "/users/bulk", `{"users":[`+validUser+`,null]}`, 400, "bad-request").check = naming("users.1")
	add("a row missing a field is 400", "POST", "/users/bulk", `{"users":[{"username":"newbie","email":"n@example.com"}]}`, 400, "bad-request").check = naming("users.0.full_name")
	add("a row with an unknown field is 400", "POST", "/users/bulk", `{"users":[{"username":"newbie","email":"n@example.com","full_name":"N","x":1}]}`, 400, "bad-request")

	// Accounts.
	add("a negative balance is 400", "POST", "/accounts", `{"balance":-1}`, 400, "validation-error").check = naming("balance")
	add("a balance over 10^15 is 400", "POST", "/accounts", `{"balance":1000000000000001}`, 400, "validation-error").check = naming("balance")
	add("a balance past int64 is 400", "POST", "/accounts", `{"balance":9223372036854775808}`, 400, "bad-request").check = naming("balance")
	add("a balance of 1e400 is 400", "POST", "/accounts", `{"balance":1e400}`, 400, "bad-request")
	add("a fractional balance is 400", "POST", "/accounts", `{"balance":1.5}`, 400, "bad-request").check = naming("balance")
	add("a balance as a string is 400", "POST", "/accounts", `{"balance":"100"}`, 400, "bad-request").check = naming("balance")
	add("null for the balance is 400", "POST", "/accounts", `{"balance":null}`, 400, "bad-request").check = naming("balance")
	add("user_id 0 is 400", "POST", "/accounts", `{"user_id":0,"balance":1}`, 400, "validation-error").check = naming("user_id")
	add("a user_id as a string is 400", "POST", "/accounts", `{"user_id":"1","balance":1}`, 400, "bad-request").check = naming("user_id")
	add("an unknown user_id is 404", "POST", "/accounts", `{"user_id":999999,"balance":1}`, 404, "not-found")

	// Transfers.
	transfer := func(from, to int64, amount string) string {
		return fmt.Sprintf(`{"from_account":%d,"to_account":%d,"amount":%s}`, from, to, amount)
	}
	add("amount 0 is 400", "POST", "/transfers", transfer(rich.ID, poor.ID, "0"), 400, "validation-error").check = naming("amount")
	add("a negative amount is 400", "POST", "/transfers", transfer(rich.ID, poor.ID, "-5"), 400, "validation-error").check = naming("amount")
	add("an amount over 10^15 is 400", "POST", "/transfers", transfer(rich.ID, poor.ID, "1000000000000001"), 400, "validation-error").check = naming("amount")
	add("an amount past int64 is 400", "POST", "/transfers", transfer(rich.ID, poor.ID, "99999999999999999999"), 400, "bad-request").check = naming("amount")
	add("an amount of 1e30 is 400", "POST", "/transfers", transfer(rich.ID, poor.ID, "1e30"), 400, "bad-request")
	add("a fractional amount is 400", "POST", "/transfers", transfer(rich.ID, poor.ID, "0.5"), 400, "bad-request")
	add("the same account on both sides is 400", "POST", "/transfers", transfer(rich.ID, rich.ID, "1"), 400, "validation-error").check = naming("to_account")
	add("account 0 is 400", "POST", "/transfers", transfer(0, poor.ID, "1"), 400, "validation-error").check = naming("from_account")
	add("a missing amount is 400", "POST", "/transfers", fmt.Sprintf(`{"from_account":%d,"to_account":%d}`, rich.ID, poor.ID), 400, "bad-request").check = naming("amount")
	add("an account id as a string is 400", "POST", "/transfers", fmt.Sprintf(`{"from_account":"%d","to_account":%d,"amount":1}`, rich.ID, poor.ID), 400, "bad-request")
	add("an unknown source account is 404", "POST", "/transfers", transfer(999999, poor.ID, "1"), 404, "not-found")
	add("an unknown destination account is 404", "POST", "/transfers", transfer(rich.ID, 999999, "1"), 404, "not-found")
	add("more than the balance is 422", "POST", "/transfers", transfer(rich.ID, poor.ID, "1001"), 422, "insufficient-funds")
	add("from an empty account is 422", "POST", "/transfers", transfer(poor.ID, rich.ID, "1"), 422, "insufficient-funds")

	// Batches.
	op := fmt.Sprintf(`{"op":"transfer","from_account":%d,"to_account":%d,"amount":1}`, rich.ID, poor.ID)
	add("an unknown op is 400", "POST", "/batch", `{"operations":[`+op+`,{"op":"delete_everything"}]}`, 400, "bad-request")
	add("an op that is missing is 400", "POST", "/batch", fmt.Sprintf(`{"operations":[{"from_account":%d,"to_account":%d,"amount":1}]}`, rich.ID, poor.ID), 400, "bad-request")
	add("an op that is not a string is 400", "POST", "/batch", `{"operations":[{"op":1}]}`, 400, "bad-request")
	add("a null operation is 400", "POST", "/batch", `{"operations":[`+op+`,null]}`, 400, "bad-request")
	add("an operation with an unknown field is 400", "POST", "/batch", `{"operations":[`+op[:len(op)-1]+`,"x":1}]}`, 400, "bad-request")
	add("an operation missing a field is 400", "POST", "/batch", `{"operations":[{"op":"create_user","username":"newbie","email":"n@example.com"}]}`, 400, "bad-request").check = naming("full_name")
	add("an operation of the wrong type is 400", "POST", "/batch", `{"operations":[{"op":"transfer","from_account":1,"to_account":2,"amount":"1"}]}`, 400, "bad-request")
	add("more than 1000 operations is 400", "POST", "/batch", `{"operations":[`+strings.Repeat(op+",", 1000)+op+`]}`, 400, "validation-error").check = naming("operations")
	add("no operations is 400", "POST", "/batch", `{"operations":[]}`, 400, "validation-error")
	add("null operations is 400", "POST", "/batch", `{"operations":null}`, 400, "bad-request").check = naming("operations")
	add("operations that are an object is 400", "POST", "/batch", `{"operations":{}}`, 400, "bad-request")

	// The demo upstream's query.
	for _, q := range []string{"latency_ms=abc", "latency_ms=-1", "latency_ms=10001", "latency_ms=1.5", "fail_rate=2", "fail_rate=-0.1", "fail_rate=NaN", "fail_rate=Inf", "fail_rate=x"} {
		field, _, _ := strings.Cut(q, "=")
		add("a bad "+q+" is 400", "GET", "/demo/upstream/x?"+q, nil, 400, "validation-error").check = naming(field)
	}
	add("a name over 64 bytes is 400", "GET", "/demo/upstream/"+strings.Repeat("n", 65), nil, 400, "validation-error").check = naming("name")

	// Problem types.
	add("an unknown slug is 404", "GET", "/docs/problems/no-such-thing", nil, 404, "not-found")

	// Methods and paths no route has.
	allow := func(methods ...string) func(t *testing.T, r *response, p problem) {
		return func(t *testing.T, r *response, p problem) {
			for _, m := range methods {
				require.Contains(t, r.header.Get("Allow"), m)
			}
		}
	}
	add("PATCH is 405 with Allow", "PATCH", "/users", `{}`, 405, "method-not-allowed").check = allow("GET", "POST")
	add("DELETE is 405 with Allow", "DELETE", "/users", nil, 405, "method-not-allowed").check = allow("GET", "POST")
	add("PATCH is 405 with Allow", "PATCH", userURL, `{}`, 405, "method-not-allowed").check = allow("GET", "PUT", "DELETE")
	add("bulk is taken for an id, which it is not: 400", "GET", "/users/bulk", nil, 400, "validation-error")
	add("GET is 405 with Allow", "GET", "/accounts", nil, 405, "method-not-allowed").check = allow("POST")
	add("DELETE is 405 with Allow", "DELETE", richURL, nil, 405, "method-not-allowed").check = allow("GET")
	add("GET is 405 with Allow", "GET", "/transfers", nil, 405, "method-not-allowed").check = allow("POST")
	add("PUT is 405 with Allow", "PUT", "/batch", `{}`, 405, "method-not-allowed").check = allow("POST")
	add("POST is 405 with Allow", "POST", "/aggregate", `{}`, 405, "method-not-allowed").check = allow("GET")
	add("POST is 405 with Allow", "POST", "/demo/upstream/x", `{}`, 405, "method-not-allowed").check = allow("GET")
	add("POST is 405 with Allow", "POST", "/users/export", `{}`, 405, "method-not-allowed").check = allow("GET")
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/db-pool-status"} {
		add("POST is 405 with Allow", "POST", p, `{}`, 405, "method-not-allowed").check = allow("GET")
	}
	for _, p := range []string{"/nope", "/users/", userURL + "/accounts", "/accounts/", "/demo/upstream/", "/", "/USERS"} {
		add("an unknown path is 404", "GET", p, nil, 404, "not-found")
	}
	return rows
}

// bulkOf returns a bulk body of n valid users.
func bulkOf(n int) string {
	var b strings.Builder
	b.WriteString(`{"users":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"username":"bulk%d","email":"bulk%d@example.com","full_name":"B"}`, i, i)
	}
	b.WriteString("]}")
	return b.String()
}

// snapshot reads, through the API, every user and the accounts up to
// last and some ids past it (to see any account a refused request might
// have opened), for comparing before and after.
func snapshot(t *testing.T, ts *testServer, last int64) string {
	t.Helper()
	var b strings.Builder
	r := ts.do("GET", "/users/export", nil)
	require.Equal(t, http.StatusOK, r.status)
	b.Write(r.body)
	var tasks pagination.Page[taskqueue.Info]
	ts.do("GET", "/tasks?limit=100", nil).json(t, &tasks)
	for _, info := range tasks.Items {
		fmt.Fprintf(&b, "task %s %s %s\n", info.ID, info.Kind, info.Status)
	}
	for id := int64(1); id <= last+50; id++ {
		r := ts.do("GET", fmt.Sprintf("/accounts/%d", id), nil)
		if r.status == http.StatusNotFound {
			continue
		}
		require.Equal(t, http.StatusOK, r.status)
		b.Write(r.body)
	}
	return b.String()
}

// checkCoverage fails unless every route of the document, except those
// that take no input at all, is sent at least one of rows.
func checkCoverage(t *testing.T, ts *testServer, rows []badRequest) {
	t.Helper()
	rt, err := legacyrouter.NewRouter(ts.doc)
	require.NoError(t, err)
	hit := map[string]bool{}
	for _, row := range rows {
		req, err := http.NewRequest(row.method, ts.base+row.path, nil)
		require.NoError(t, err)
		if route, _, err := rt.FindRoute(req); err == nil {
			hit[route.Operation.OperationID] = true
		}
	}
	for path, item := range ts.doc.Paths.Map() {
		for method, o := range item.Operations() {
			if len(o.Parameters) == 0 && o.RequestBody == nil {
				continue // nothing to get wrong but the method, which has its rows
			}
			require.True(t, hit[o.OperationID], "no bad request is sent to %s %s", method, path)
		}
	}
}

// send sends a request with exactly the headers given (a nil value leaves
// that header out), and application/json for a body unless the headers
// say otherwise, and reads the whole answer.
func (ts *testServer) send(method, path string, body any, header http.Header) *response {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(ts.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, ts.base+path, rd)
	require.NoError(ts.t, err)
	if _, set := header["Content-Type"]; body != nil && !set {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		if vs != nil {
			req.Header[k] = vs
		}
	}
	resp, err := ts.client.Do(req)
	require.NoError(ts.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(ts.t, err)
	return &response{status: resp.StatusCode, header: resp.Header, body: raw}
}

// maxUploadForTests is the MAX_UPLOAD of TestBadRequests.
const maxUploadForTests = 64 << 10

// badTaskRequests returns the rows for the task and file routes; done is
// a task that has finished.
func badTaskRequests(done taskqueue.Info) []badRequest {
	var rows []badRequest
	add := func(name, method, path string, body any, status int, kind string, header ...string) *badRequest {
		h := http.Header{}
		for i := 0; i+1 < len(header); i += 2 {
			h[header[i]] = append(h[header[i]], header[i+1])
		}
		rows = append(rows, badRequest{name: method + " " + path + ": " + name, method: method, path: path, body: body, header: h, status: status, kind: kind})
		return &rows[len(rows)-1]
	}
	naming := func(fields ...string) func(t *testing.T, r *response, p problem) {
		return func(t *testing.T, r *response, p problem) {
			var got []string
			for _, e := range p.Errors {
				got = append(got, e.Field)
			}
			require.Subset(t, got, fields, "detail: %s", p.Detail)
		}
	}

	// POST /tasks: the body is JSON, so the generic rows apply, and then
	// what each kind's payload can get wrong.
	valid := `{"kind":"demo","payload":{"steps":1,"step_ms":0}}`
	add("malformed JSON is 400", "POST", "/tasks", valid[:len(valid)-3], 400, "bad-request")
	add("an unknown field is 400", "POST", "/tasks", `{"kind":"demo","zzz":1}`, 400, "bad-request").check = naming("zzz")
	add("a missing kind is 400", "POST", "/tasks", `{"payload":{}}`, 400, "bad-request").check = naming("kind")
	add("an empty body is 400", "POST", "/tasks", "", 400, "bad-request")
	add("a JSON null body is 400", "POST", "/tasks", `null`, 400, "bad-request")
	add("trailing data is 400", "POST", "/tasks", valid+`{}`, 400, "bad-request")
	add("a body over MAX_BODY is 413", "POST", "/tasks", `{"kind":"demo","payload":{"x":"`+strings.Repeat("x", maxBodyForTests)+`"}}`, 413, "payload-too-large")
	add("text/plain is 415", "POST", "/tasks", valid, 415, "unsupported-media-type", "Content-Type", "text/plain")
	for _, k := range []string{"resize", "file", "callback", "", "DEMO"} {
		add("kind "+strconv.Quote(k)+" is 400", "POST", "/tasks", `{"kind":"`+k+`"}`, 400, "validation-error").check = naming("kind")
	}
	add("a kind that is not a string is 400", "POST", "/tasks", `{"kind":1}`, 400, "bad-request").check = naming("kind")
	add("steps 0 is 400", "POST", "/tasks", `{"kind":"demo","payload":{"steps":0}}`, 400, "validation-error").check = naming("payload.steps")
	add("steps 101 is 400", "POST", "/tasks", `{"kind":"demo","payload":{"steps":101}}`, 400, "validation-error").check = naming("payload.steps")
	add("a negative step_ms is 400", "POST", "/tasks", `{"kind":"demo","payload":{"step_ms":-1}}`, 400, "validation-error").check = naming("payload.step_ms")
	add("a step_ms over a minute is 400", "POST", "/tasks", `{"kind":"demo","payload":{"step_ms":60001}}`, 400, "validation-error").check = naming("payload.step_ms")
	add("steps as a string is 400", "POST", "/tasks", `{"kind":"demo","payload":{"steps":"5"}}`, 400, "validation-error").check = naming("payload.steps")
	add("an unknown payload field is 400", "POST", "/tasks", `{"kind":"demo","payload":{"stepz":5}}`, 400, "validation-error").check = naming("payload.stepz")
	add("a payload that is not an object is 400", "POST", "/tasks", `{"kind":"demo","payload":[1]}`, 400, "validation-error")
	add("emails without a payload is 400", "POST", "/tasks", `{"kind":"emails"}`, 400, "validation-error").check = naming("payload")
	add("no addresses is 400", "POST", "/tasks", `{"kind":"emails","payload":{"emails":[],"template":"hi"}}`, 400, "validation-error").check = naming("payload.emails")
	add("a bad address is 400", "POST", "/tasks", `{"kind":"emails","payload":{"emails":["ok@example.com","nope"],"template":"hi"}}`, 400, "validation-error").check = naming("payload.emails.1")
	add("an empty template is 400", "POST", "/tasks", `{"kind":"emails","payload":{"emails":["ok@example.com"],"template":""}}`, 400, "validation-error").check = naming("payload.template")
	add("a missing template is 400", "POST", "/tasks", `{"kind":"emails","payload":{"emails":["ok@example.com"]}}`, 400, "validation-error").check = naming("payload.template")
	add("over 1000 addresses is 400", "POST", "/tasks", `{"kind":"emails","payload":{"emails":[`+strings.Repeat(`"a@example.com",`, 1000)+`"a@example.com"],"template":"hi"}}`, 400, "validation-error").check = naming("payload.emails")
	add("an empty X-Client-ID is 400", "POST", "/tasks", valid, 400, "bad-request", "X-Client-ID", "")

	// Listing, reading, cancelling and following tasks.
	for _, q := range []string{"status=done", "status=", "kind=resize", "limit=0", "limit=x", "cursor=abc"} {
		status, kind := 400, "validation-error"
		if strings.HasPrefix(q, "cursor") {
			kind = "invalid-cursor"
		}
		if q == "status=" {
			continue // an empty filter is no filter
		}
		add("a bad "+q+" is 400", "GET", "/tasks?"+q, nil, status, kind)
	}
	for _, id := range []string{"nope", "01m96ta64q3qk36x2n2rv51ktk", strings.Repeat("z", 300)} {
		add("an unknown id is 404", "GET", "/tasks/"+id, nil, 404, "not-found")
		add("an unknown id is 404", "DELETE", "/tasks/"+id, nil, 404, "not-found")
		add("an unknown id is 404", "GET", "/tasks/"+id+"/events", nil, 404, "not-found")
	}
	add("a finished task cannot be cancelled: 409", "DELETE", "/tasks/"+done.ID, nil, 409, "task-finished")
	add("a Last-Event-ID that is not a number is 400", "GET", "/tasks/"+done.ID+"/events", nil, 400, "validation-error", "Last-Event-ID", "abc")
	add("a lastEventId that is not a number is 400", "GET", "/tasks/"+done.ID+"/events?lastEventId=-1", nil, 400, "validation-error")
	add("PATCH is 405", "PATCH", "/tasks", `{}`, 405, "method-not-allowed")
	add("PUT is 405", "PUT", "/tasks/"+done.ID, `{}`, 405, "method-not-allowed")
	add("POST is 405", "POST", "/tasks/"+done.ID+"/events", `{}`, 405, "method-not-allowed")

	// Uploads.
	const boundary = "b0undary"
	mp := func(parts ...string) string { // name, filename ("" for a field), content, …
		var b strings.Builder
		for i := 0; i+2 < len(parts); i += 3 {
			b.WriteString("--" + boundary + "\r\n")
			if parts[i+1] != "" {
				fmt.Fprintf(&b, "Content-Disposition: form-data; name=%q; filename=%q\r\nContent-Type: text/plain\r\n\r\n", parts[i], parts[i+1])
			} else {
				fmt.Fprintf(&b, "Content-Disposition: form-data; name=%q\r\n\r\n", parts[i])
			}
			b.WriteString(parts[i+2] + "\r\n")
		}
		b.WriteString("--" + boundary + "--\r\n")
		return b.String()
	}
	multipartCT := "multipart/form-data; boundary=" + boundary
	upload := func(name string, body string, status int, kind string, header ...string) *badRequest {
		return add(name, "POST", "/files", body, status, kind, append([]string{"Content-Type", multipartCT}, header...)...)
	}
	upload("no file is 400", mp("callback_url", "", "http://127.0.0.1:1/hook"), 400, "validation-error").check = naming("file")
	upload("an empty form is 400", mp(), 400, "validation-error").check = naming("file")
	upload("two files are 400", mp("file", "a.txt", "a", "file", "b.txt", "b"), 400, "validation-error").check = naming("file")
	upload("an unknown field is 400", mp("file", "a.txt", "a", "extra", "", "x"), 400, "validation-error").check = naming("extra")
	for _, u := range []string{"ftp://example.com/x", "not a url", "/relative", "http://", "http://example.com/" + strings.Repeat("p", 2049)} {
		upload("callback_url "+u[:min(len(u), 24)]+" is 400", mp("file", "a.txt", "a", "callback_url", "", u), 400, "validation-error").check = naming("callback_url")
	}
	upload("two callback URLs are 400", mp("file", "a.txt", "a", "callback_url", "", "http://127.0.0.1:1/a", "callback_url", "", "http://127.0.0.1:1/b"), 400, "validation-error")
	upload("a file over MAX_UPLOAD is 413", mp("file", "big.txt", strings.Repeat("x", maxUploadForTests+1)), 413, "payload-too-large")
	upload("a body cut short is 400", mp("file", "a.txt", "abc")[:60], 400, "bad-request")
	upload("a body with another boundary is 400", strings.ReplaceAll(mp("file", "a.txt", "abc"), boundary, "other"), 400, "")
	add("JSON is 415", "POST", "/files", `{"file":"abc"}`, 415, "unsupported-media-type")
	add("no Content-Type is 415", "POST", "/files", "abc", 415, "unsupported-media-type").header["Content-Type"] = nil
	add("multipart without a boundary is 400", "POST", "/files", mp("file", "a.txt", "a"), 400, "bad-request", "Content-Type", "multipart/form-data")
	add("an empty X-Client-ID is 400", "POST", "/files", mp("file", "a.txt", "a"), 400, "bad-request", "Content-Type", multipartCT, "X-Client-ID", "")
	add("GET is 405", "GET", "/files", nil, 405, "method-not-allowed")
	return rows
}
