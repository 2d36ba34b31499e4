package pagination_test

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	_ "modernc.org/sqlite"

	"github.com/asynckit/asynckit/pagination"
)

// user is a row of the example's users table.
type user struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// userCursor is what the client holds between pages: the sort values of
// the last user it saw.
type userCursor struct {
	CreatedAt time.Time `json:"t"`
	ID        int64     `json:"id"`
}

// newest first; an index on (created_at, id) serves it.
var byNewest = pagination.Keyset{{Name: "created_at", Desc: true}, {Name: "id", Desc: true}}

// listUsers is GET /users?limit=&cursor=: one page of users, newest first.
func listUsers(db *sql.DB, codec *pagination.Codec) http.HandlerFunc {
	codec = codec.Bind("users", "newest") // a users cursor works nowhere else
	orderBy, err := byNewest.OrderBy(pagination.SQLite)
	if err != nil {
		panic(err) // a bug in the keyset, found at start-up
	}
	return func(w http.ResponseWriter, r *http.Request) {
		limit, err := pagination.ParseLimit(r.URL.Query().Get("limit"), 3, 100)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		where, args := "", []any(nil)
		if s := r.URL.Query().Get("cursor"); s != "" {
			var c userCursor
			if err := codec.Decode(s, &c); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if where, args, err = byNewest.After([]any{c.CreatedAt, c.ID}, pagination.SQLite); err != nil {
				internalError(w, err)
				return
			}
			where = "WHERE " + where
		}
		rows, err := db.QueryContext(r.Context(),
			fmt.Sprintf("SELECT id, name, created_at FROM users %s ORDER BY %s LIMIT %d", where, orderBy, limit+1), args...)
		if err != nil {
			internalError(w, err)
			return
		}
		defer rows.Close()
		var users []user
		for rows.Next() {
			var u user
			if err := rows.Scan(&u.ID, &u.Name, &u.CreatedAt); err != nil {
				internalError(w, err)
				return
			}
			users = append(users, u)
		}
		if err := rows.Err(); err != nil {
			internalError(w, err)
			return
		}
		page, err := pagination.NewPage(users, limit, func(last user) (string, error) {
			return codec.Encode(userCursor{CreatedAt: last.CreatedAt, ID: last.ID})
		})
		if err != nil {
			internalError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	}
}

// internalError logs what went wrong and tells the client only that it did.
func internalError(w http.ResponseWriter, err error) {
	log.Printf("list users: %v", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

// This example serves a users table from SQLite, newest first, and a
// client follows next_cursor until has_more is false.
func Example_httpHandler() {
	db, err := sql.Open("sqlite", "file:example_users?mode=memory&cache=shared")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_at DATETIME NOT NULL);
		CREATE INDEX users_newest ON users (created_at, id)`); err != nil {
		log.Fatal(err)
	}
	signup := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	for i, name := range []string{"ann", "bob", "cy", "dee", "eve", "fay", "gus"} {
		// Store times as the SQLite dialect binds them. ann and bob
		// signed up at the same instant; id breaks the tie.
		at, _ := pagination.SQLite.Arg(signup.Add(time.Duration(max(i, 1)) * time.Minute))
		if _, err := db.Exec("INSERT INTO users (id, name, created_at) VALUES (?, ?, ?)", i+1, name, at); err != nil {
			log.Fatal(err)
		}
	}

	codec, err := pagination.NewCodec([]byte("an example key of 32 bytes or more"))
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(listUsers(db, codec))
	defer srv.Close()

	get := func(query string) (int, string) {
		resp, err := http.Get(srv.URL + "/users?" + query)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, strings.TrimSpace(string(msg))
		}
		var page pagination.Page[user]
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
			log.Fatal(err)
		}
		var names []string
		for _, u := range page.Items {
			names = append(names, u.Name)
		}
		return resp.StatusCode, fmt.Sprintf("%v has_more=%v", names, page.HasMore) + "\n" + page.NextCursor
	}

	query := "limit=3"
	for {
		status, body := get(query)
		shown, next, _ := strings.Cut(body, "\n")
		fmt.Println(status, shown)
		if next == "" {
			break
		}
		query = "limit=3&cursor=" + url.QueryEscape(next)
	}
	fmt.Println(get("limit=0"))
	fmt.Println(get("cursor=not-a-cursor"))
	// Output:
	// 200 [gus fay eve] has_more=true
	// 200 [dee cy bob] has_more=true
	// 200 [ann] has_more=false
	// 400 pagination: limit 0 must be at least 1
	// 400 pagination: invalid cursor: truncated
}

// This example rotates the signing key: cursors handed out under the old
// key keep working while it is listed second, and stop once it is dropped.
func ExampleNewCodec_keyRotation() {
	oldKey := []byte("the key used until today, 32+ bytes")
	newKey := []byte("the key used from today on, 32+ bytes")
	type cursor struct {
		ID int64 `json:"id"`
	}

	before, _ := pagination.NewCodec(oldKey)
	handedOut, _ := before.Encode(cursor{ID: 42})

	rotated, _ := pagination.NewCodec(newKey, oldKey) // signs with newKey, accepts both
	var c cursor
	err := rotated.Decode(handedOut, &c)
	fmt.Println(c.ID, err)

	retired, _ := pagination.NewCodec(newKey) // weeks later: oldKey dropped
	err = retired.Decode(handedOut, &c)
	fmt.Println(errors.Is(err, pagination.ErrInvalidCursor), err)
	// Output:
	// 42 <nil>
	// true pagination: invalid cursor: bad signature
}

// This example shows the condition and ORDER BY a keyset produces on each
// database, for the page after the row (created_at 2026-05-01 09:30, id 7).
func ExampleKeyset_After() {
	ks := pagination.Keyset{{Name: "created_at", Desc: true}, {Name: "id", Desc: true}}
	last := []any{time.Date(2026, 5, 1, 9, 30, 0, 0, time.UTC), int64(7)}
	for _, d := range []pagination.Dialect{pagination.Postgres, pagination.Postgres.Offset(1), pagination.MySQL, pagination.SQLite} {
		where, args, err := ks.After(last, d)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%-20s %s  %d args\n", d, where, len(args))
	}
	orderBy, _ := ks.OrderBy(pagination.Postgres)
	fmt.Println("ORDER BY", orderBy)
	// Output:
	// Postgres             ((created_at, id) < ($1, $2))  2 args
	// Postgres (offset 1)  ((created_at, id) < ($2, $3))  2 args
	// MySQL                (created_at <= ? AND (created_at < ? OR (created_at = ? AND id < ?)))  4 args
	// SQLite               ((created_at, id) < (?, ?))  2 args
	// ORDER BY created_at DESC, id DESC
}

// This example pages on a nullable column. NULL scores sort last, and the
// page after a row with a NULL score holds only the later NULL rows. MySQL
// needs no NULLS LAST here: it sorts NULLs lowest, so last when descending.
func ExampleKeyset_After_nullable() {
	ks := pagination.Keyset{{Name: "score", Desc: true, Nulls: pagination.NullsLast}, {Name: "id"}}
	orderBy, _ := ks.OrderBy(pagination.Postgres)
	fmt.Println("ORDER BY", orderBy)
	afterValue, _, _ := ks.After([]any{12, int64(3)}, pagination.Postgres)
	fmt.Println(afterValue)
	afterNull, _, _ := ks.After([]any{sql.NullInt64{}, int64(3)}, pagination.Postgres)
	fmt.Println(afterNull)
	orderBy, _ = ks.OrderBy(pagination.MySQL)
	fmt.Println("MySQL: ORDER BY", orderBy)
	// Output:
	// ORDER BY score DESC NULLS LAST, id ASC
	// ((score <= $1 OR score IS NULL) AND ((score < $1 OR score IS NULL) OR (score = $1 AND id > $2)))
	// (score IS NULL AND id > $1)
	// MySQL: ORDER BY score DESC, id ASC
}

// This example ties cursors to the listing that issued them, so a cursor
// of one search cannot be replayed against another.
func ExampleCodec_Bind() {
	codec, _ := pagination.NewCodec([]byte("an example key of 32 bytes or more"))
	type cursor struct {
		ID int64 `json:"id"`
	}
	s, _ := codec.Bind("users", "q=ann").Encode(cursor{ID: 9})

	var c cursor
	fmt.Println(codec.Bind("users", "q=ann").Decode(s, &c), c.ID)
	fmt.Println(codec.Bind("users", "q=bob").Decode(s, &c))
	// Output:
	// <nil> 9
	// pagination: invalid cursor: issued for a different query
}

// This example reads the page size from a query string.
func ExampleParseLimit() {
	for _, s := range []string{"", "50", "1000", "0", "ten"} {
		n, err := pagination.ParseLimit(s, 20, 100)
		fmt.Println(n, err)
	}
	// Output:
	// 20 <nil>
	// 50 <nil>
	// 100 <nil>
	// 0 pagination: limit 0 must be at least 1
	// 0 pagination: limit "ten" is not a whole number
}
