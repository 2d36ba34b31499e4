package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/asynckit/asynckit/pagination"
	"github.com/asynckit/asynckit/txn"
)

// user is a user as the API shows it.
type user struct {
	ID        int64     `json:"id" doc:"The user's id; ids are never reused" min:"1"`
	Username  string    `json:"username" doc:"Unique, lower case"`
	Email     string    `json:"email" doc:"Unique, lower case" format:"email"`
	FullName  string    `json:"full_name"`
	Version   int64     `json:"version" doc:"1 when created, one more with each update" min:"1"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// userInput is the body of POST /users and PUT /users/{id}.
type userInput struct {
	Username string `json:"username" doc:"3 to 32 lower-case letters, digits, dots, dashes and underscores, starting with a letter or digit" pattern:"^[a-z0-9][a-z0-9._-]{2,31}$" example:"ada"`
	Email    string `json:"email" doc:"An address such as ada@example.com, at most 254 bytes; kept in lower case" format:"email" maxLength:"254" example:"ada@example.com"`
	FullName string `json:"full_name" doc:"1 to 100 characters, without control characters; spaces around it are trimmed" minLength:"1" maxLength:"100" example:"Ada Lovelace"`
}

var usernamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{2,31}$`)

// normalize trims and lower-cases what the API keeps in a canonical form
// and returns what is wrong with in; prefix names the fields for bulk rows.
func (in *userInput) normalize() []fieldError {
	var errs []fieldError
	if !usernamePattern.MatchString(in.Username) {
		errs = append(errs, fieldError{Field: "username", Message: "must be 3 to 32 lower-case letters, digits, dots, dashes or underscores, starting with a letter or digit"})
	}
	in.Email = strings.ToLower(strings.TrimSpace(in.Email))
	if addr, err := mail.ParseAddress(in.Email); err != nil || addr.Address != in.Email || len(in.Email) > 254 || !strings.Contains(in.Email, "@") {
		errs = append(errs, fieldError{Field: "email", Message: "must be an email address such as ada@example.com, at most 254 bytes"})
	}
	in.FullName = strings.TrimSpace(in.FullName)
	if n := utf8.RuneCountInString(in.FullName); n < 1 || n > 100 || !utf8.ValidString(in.FullName) || strings.ContainsFunc(in.FullName, unicode.IsControl) {
		errs = append(errs, fieldError{Field: "full_name", Message: "must be 1 to 100 characters without control characters"})
	}
	return errs
}

// bulkUsersInput is the body of POST /users/bulk.
type bulkUsersInput struct {
	Users []userInput `json:"users" doc:"The users to create, all or none" minItems:"1" maxItems:"1000"`
}

// bulkResult is the answer of POST /users/bulk.
type bulkResult struct {
	Created int `json:"created" doc:"How many users were created"`
}

// maxBulkUsers bounds one POST /users/bulk.
const maxBulkUsers = 1000

// invalidateAfterCommit has the user cache drop what the writes in the
// transaction in ctx make stale (see userCache.written).
func (s *server) invalidateAfterCommit(ctx context.Context, changes ...userChange) error {
	return s.users.written(ctx, s.store.db, changes...)
}

func idParam(what string) param {
	return param{Name: "id", In: "path", Description: "The " + what + "'s id", Required: true,
		Schema: &schema{Type: "integer", Format: "int64", Minimum: ptr(1.0)}}
}

func (s *server) userRoutes(a *api) {
	handleJSON(a, op{Pattern: "POST /users", ID: "createUser", Tag: "users", Summary: "Create a user",
		Description: "A username or email that another user holds is a 409.",
		Idempotent:  true, Problems: []kind{probValidation, probConflict}},
		http.StatusCreated, s.createUser)
	handleJSON(a, op{Pattern: "GET /users", ID: "searchUsers", Tag: "users", Summary: "List or search users",
		Description: "Users in id order, keyset-paged. With q, only those whose username or full name starts with q, ignoring case. Pages are cached for up to 30 seconds, and dropped by any user write as a user is (see GET /users/{id}).",
		Params: []param{
			{Name: "q", In: "query", Description: "Prefix of the username or full name, 1 to 100 characters", Schema: &schema{Type: "string", MaxLength: ptr(100)}},
			limitParam, cursorParam,
		},
		Problems: []kind{probValidation, probInvalidCursor}},
		http.StatusOK, s.searchUsers)
	handleRaw(a, op{Pattern: "GET /users/export", ID: "exportUsers", Tag: "users", Summary: "Export every user as NDJSON",
		Description: "One user per line, in id order, streamed as it is read, in batches, so any number of users is exported in bounded memory.",
		Status:      http.StatusOK,
		Response:    &content{MediaType: "application/x-ndjson", Type: reflect.TypeFor[user](), Description: "One JSON user per line"}},
		s.exportUsers)
	handleJSON(a, op{Pattern: "POST /users/bulk", ID: "bulkCreateUsers", Tag: "users", Summary: "Create up to 1,000 users at once",
		Description: "All in one transaction, with multi-row INSERTs. If any row is invalid, or its username or email is taken, nothing is created and the 422 lists each bad row by index.",
		Problems:    []kind{probValidation, probInvalidRows, probConflict}},
		http.StatusCreated, s.bulkCreateUsers)
	handleJSON(a, op{Pattern: "GET /users/{id}", ID: "getUser", Tag: "users", Summary: "Get a user",
		Description: "Served from a cache in front of the database; a read that starts after a write to the user has been answered never sees the user as it was before it, " +
			"through any instance of the service when they share Redis (REDIS_URL). Instances on Postgres without Redis learn of each other's writes by NOTIFY, " +
			"so another instance than the writer's may serve the older user for the few milliseconds that takes.",
		Params: []param{idParam("user")}, Problems: []kind{probNotFound}},
		http.StatusOK, s.getUser)
	handleJSON(a, op{Pattern: "PUT /users/{id}", ID: "updateUser", Tag: "users", Summary: "Replace a user's fields",
		Params: []param{idParam("user")}, Idempotent: true, Problems: []kind{probValidation, probNotFound, probConflict}},
		http.StatusOK, s.updateUser)
	handleJSON(a, op{Pattern: "DELETE /users/{id}", ID: "deleteUser", Tag: "users", Summary: "Delete a user",
		Description: "A user who still owns accounts cannot be deleted (409).",
		Params:      []param{idParam("user")}, Problems: []kind{probNotFound, probConflict}},
		http.StatusNoContent, s.deleteUser)
}

func (s *server) createUser(c *call, in *userInput) (user, error) {
	if errs := in.normalize(); len(errs) > 0 {
		return user{}, invalid(errs...)
	}
	var u user
	err := txn.Do(c.ctx(), s.store.db, func(ctx context.Context, _ *sql.Tx) error {
		var err error
		if u, err = s.store.insertUser(ctx, *in); err != nil {
			return userConflict(err)
		}
		return s.invalidateAfterCommit(ctx, userChange{u.ID, u.Version})
	})
	return u, err
}

func (s *server) getUser(c *call, _ *none) (user, error) {
	id, err := c.pathID("id")
	if err != nil {
		return user{}, err
	}
	u, err := s.users.get(c.ctx(), id)
	if errors.Is(err, errUserNotFound) {
		return user{}, newProblem(probNotFound, "no user has id %d", id)
	}
	return u, err
}

func (s *server) updateUser(c *call, in *userInput) (user, error) {
	id, err := c.pathID("id")
	if err != nil {
		return user{}, err
	}
	if errs := in.normalize(); len(errs) > 0 {
		return user{}, invalid(errs...)
	}
	var u user
	err = txn.Do(c.ctx(), s.store.db, func(ctx context.Context, _ *sql.Tx) error {
		var err error
		u, err = s.store.updateUser(ctx, id, *in)
		if errors.Is(err, errUserNotFound) {
			return newProblem(probNotFound, "no user has id %d", id)
		}
		if err != nil {
			return userConflict(err)
		}
		return s.invalidateAfterCommit(ctx, userChange{id, u.Version})
	})
	return u, err
}

func (s *server) deleteUser(c *call, _ *none) (none, error) {
	id, err := c.pathID("id")
	if err != nil {
		return none{}, err
	}
	return none{}, txn.Do(c.ctx(), s.store.db, func(ctx context.Context, _ *sql.Tx) error {
		err := s.store.deleteUser(ctx, id)
		if errors.Is(err, errUserNotFound) {
			return newProblem(probNotFound, "no user has id %d", id)
		}
		if k, _ := violation(err); k == foreignKeyViolation {
			return newProblem(probConflict, "user %d still owns accounts", id)
		}
		if err != nil {
			return err
		}
		return s.invalidateAfterCommit(ctx, userChange{id, tombstone})
	})
}

// userConflict turns a unique violation into a 409 naming the field.
func userConflict(err error) error {
	k, name := violation(err)
	if k != uniqueViolation {
		return err
	}
	switch {
	case strings.Contains(name, "username"):
		return newProblem(probConflict, "the username is already taken")
	case strings.Contains(name, "email"):
		return newProblem(probConflict, "the email is already taken")
	}
	return newProblem(probConflict, "the user conflicts with another")
}

// The query parameters of keyset-paged listings.
var (
	limitParam = param{Name: "limit", In: "query", Description: "Page size, 1 to 100; larger values are clamped to 100. Defaults to 20.",
		Schema: &schema{Type: "integer", Minimum: ptr(1.0)}}
	cursorParam = param{Name: "cursor", In: "query", Description: "The next_cursor of the previous page; omit it for the first page",
		Schema: &schema{Type: "string", MaxLength: ptr(pagination.DefaultMaxLen)}}
)

// userCursor is what a user search's cursor holds: the last id of a page.
type userCursor struct {
	ID int64 `json:"id"`
}

func (s *server) searchUsers(c *call, _ *none) (pagination.Page[user], error) {
	query := c.URL.Query()
	limit, err := pagination.ParseLimit(query.Get("limit"), 20, 100)
	if err != nil {
		return pagination.Page[user]{}, invalid(fieldError{Field: "limit", Message: "must be a whole number from 1"})
	}
	q := strings.ToLower(strings.TrimSpace(query.Get("q")))
	if utf8.RuneCountInString(q) > 100 || !utf8.ValidString(q) {
		return pagination.Page[user]{}, invalid(fieldError{Field: "q", Message: "must be at most 100 characters"})
	}
	codec := s.cursors.Bind("users", "q="+q)
	var after userCursor
	if cur := query.Get("cursor"); cur != "" {
		if err := codec.Decode(cur, &after); err != nil {
			return pagination.Page[user]{}, newProblem(probInvalidCursor, "%v", err)
		}
	}
	load := func(ctx context.Context, k pageKey) (pagination.Page[user], error) {
		rows, err := s.store.searchUsers(ctx, k.q, k.after, k.limit+1)
		if err != nil {
			return pagination.Page[user]{}, err
		}
		return pagination.NewPage(rows, k.limit, func(last user) (string, error) {
			return codec.Encode(userCursor{ID: last.ID})
		})
	}
	key := pageKey{q: q, after: after.ID, limit: limit}
	gen, ok := s.users.generation(c.ctx())
	if !ok {
		return load(c.ctx(), key) // the pages cannot be kept coherent now
	}
	key.gen = gen
	return s.users.pages.GetOrLoad(c.ctx(), key, load)
}

func (s *server) exportUsers(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	n := 0
	for u, err := range s.store.allUsers(r.Context(), exportBatch) {
		if err != nil {
			if n == 0 {
				writeError(w, r, s.log, err)
				return
			}
			// The status has gone out; all that is left is to cut the
			// stream short, which the client sees as a truncated body.
			s.log.ErrorContext(r.Context(), "export cut short", "err", err, "after", n, "request_id", requestID(r.Context()))
			panic(http.ErrAbortHandler)
		}
		if n%exportBatch == 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if n > 0 {
				_ = rc.Flush()
			}
		}
		if err := enc.Encode(u); err != nil {
			return // the client went away
		}
		n++
	}
	if n == 0 {
		w.WriteHeader(http.StatusOK)
	}
}

// exportBatch is how many users GET /users/export reads per query.
const exportBatch = 500

func (s *server) bulkCreateUsers(c *call, in *bulkUsersInput) (bulkResult, error) {
	if len(in.Users) == 0 || len(in.Users) > maxBulkUsers {
		return bulkResult{}, invalid(fieldError{Field: "users", Message: fmt.Sprintf("must hold 1 to %d users", maxBulkUsers)})
	}
	var rowErrs []fieldError
	rowErr := func(i int, field, msg string) {
		rowErrs = append(rowErrs, fieldError{Index: ptr(i), Field: field, Message: msg})
	}
	seenU, seenE := map[string]int{}, map[string]int{}
	usernames, emails := make([]string, 0, len(in.Users)), make([]string, 0, len(in.Users))
	for i := range in.Users {
		u := &in.Users[i]
		for _, e := range u.normalize() {
			rowErr(i, e.Field, e.Message)
		}
		if j, dup := seenU[u.Username]; dup {
			rowErr(i, "username", fmt.Sprintf("repeats the username of row %d", j))
		} else {
			seenU[u.Username] = i
			usernames = append(usernames, u.Username)
		}
		if j, dup := seenE[u.Email]; dup {
			rowErr(i, "email", fmt.Sprintf("repeats the email of row %d", j))
		} else {
			seenE[u.Email] = i
			emails = append(emails, u.Email)
		}
	}
	if len(rowErrs) > 0 {
		return bulkResult{}, invalidRows(rowErrs)
	}
	var created int
	err := txn.Do(c.ctx(), s.store.db, func(ctx context.Context, _ *sql.Tx) error {
		takenU, takenE, err := s.store.takenNames(ctx, usernames, emails)
		if err != nil {
			return err
		}
		for i, u := range in.Users {
			if takenU[u.Username] {
				rowErr(i, "username", "is already taken")
			}
			if takenE[u.Email] {
				rowErr(i, "email", "is already taken")
			}
		}
		if len(rowErrs) > 0 {
			return invalidRows(rowErrs)
		}
		ids, err := s.store.insertUsers(ctx, in.Users)
		if err != nil {
			return userConflict(err) // a concurrent insert took a name after the check
		}
		created = len(ids)
		changes := make([]userChange, len(ids))
		for i, id := range ids {
			changes[i] = userChange{id, 1}
		}
		return s.invalidateAfterCommit(ctx, changes...)
	})
	return bulkResult{Created: created}, err
}

// invalidRows is the 422 of a bulk request with bad rows.
func invalidRows(errs []fieldError) *problem {
	rows := map[int]bool{}
	for _, e := range errs {
		rows[*e.Index] = true
	}
	p := newProblem(probInvalidRows, "%d of the rows are invalid; nothing was created", len(rows))
	p.Errors = errs
	return p
}
