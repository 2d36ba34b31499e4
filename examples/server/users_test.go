package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/pagination"
)

func TestUsers(t *testing.T) {
	t.Parallel()
	forEachDB(t, nil, func(t *testing.T, ts *testServer) {
		var ada user
		t.Run("create answers 201 with the user, email in lower case", func(t *testing.T) {
			r := ts.do("POST", "/users", map[string]string{"username": "ada", "email": "Ada@Example.com", "full_name": " Ada Lovelace "})
			require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
			r.json(t, &ada)
			require.Positive(t, ada.ID)
			require.Equal(t, "ada", ada.Username)
			require.Equal(t, "ada@example.com", ada.Email)
			require.Equal(t, "Ada Lovelace", ada.FullName)
			require.EqualValues(t, 1, ada.Version)
			require.False(t, ada.CreatedAt.IsZero())
		})
		t.Run("a taken username or email is 409", func(t *testing.T) {
			for _, in := range []map[string]string{
				{"username": "ada", "email": "other@example.com", "full_name": "Other"},
				{"username": "other", "email": "ADA@example.com", "full_name": "Other"},
			} {
				r := ts.do("POST", "/users", in)
				require.Equal(t, http.StatusConflict, r.status)
				r.problem(t)
			}
		})
		t.Run("get answers the user", func(t *testing.T) {
			for range 2 { // a miss, then a hit
				r := ts.do("GET", fmt.Sprintf("/users/%d", ada.ID), nil)
				require.Equal(t, http.StatusOK, r.status)
				var got user
				r.json(t, &got)
				require.Equal(t, ada, got)
			}
		})
		t.Run("update replaces the fields and is seen at once by get", func(t *testing.T) {
			r := ts.do("PUT", fmt.Sprintf("/users/%d", ada.ID), map[string]string{"username": "ada.l", "email": "ada@example.org", "full_name": "Augusta Ada King"})
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
			var updated user
			r.json(t, &updated)
			require.EqualValues(t, 2, updated.Version)
			require.Equal(t, ada.CreatedAt, updated.CreatedAt)
			r = ts.do("GET", fmt.Sprintf("/users/%d", ada.ID), nil)
			var got user
			r.json(t, &got)
			require.Equal(t, updated, got)
			ada = got
		})
		t.Run("unknown ids are 404, malformed ones 400", func(t *testing.T) {
			for _, m := range []string{"GET", "DELETE"} {
				r := ts.do(m, "/users/999999", nil)
				require.Equal(t, http.StatusNotFound, r.status)
				r.problem(t)
			}
			r := ts.do("PUT", "/users/999999", map[string]string{"username": "nobody", "email": "n@example.com", "full_name": "N"})
			require.Equal(t, http.StatusNotFound, r.status)
			r = ts.do("GET", "/users/abc", nil)
			require.Equal(t, http.StatusBadRequest, r.status)
			r.problem(t)
		})
		t.Run("delete answers 204, then the user is gone", func(t *testing.T) {
			r := ts.do("POST", "/users", map[string]string{"username": "gone", "email": "gone@example.com", "full_name": "Gone"})
			var u user
			r.json(t, &u)
			require.Equal(t, http.StatusOK, ts.do("GET", fmt.Sprintf("/users/%d", u.ID), nil).status) // cached
			r = ts.do("DELETE", fmt.Sprintf("/users/%d", u.ID), nil)
			require.Equal(t, http.StatusNoContent, r.status)
			require.Empty(t, r.body)
			require.Equal(t, http.StatusNotFound, ts.do("GET", fmt.Sprintf("/users/%d", u.ID), nil).status)
		})
		t.Run("a user who owns an account cannot be deleted", func(t *testing.T) {
			r := ts.do("POST", "/accounts", map[string]any{"user_id": ada.ID, "balance": 0})
			require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
			r = ts.do("DELETE", fmt.Sprintf("/users/%d", ada.ID), nil)
			require.Equal(t, http.StatusConflict, r.status)
			r.problem(t)
		})
	})
}

func TestUserSearchPagesByCursor(t *testing.T) {
	t.Parallel()
	forEachDB(t, nil, func(t *testing.T, ts *testServer) {
		var in []userInput
		for i := range 45 {
			name := fmt.Sprintf("Grace %02d", i)
			if i%3 == 0 {
				name = fmt.Sprintf("Alan %02d", i)
			}
			in = append(in, userInput{Username: fmt.Sprintf("user%02d", i), Email: fmt.Sprintf("u%02d@example.com", i), FullName: name})
		}
		r := ts.do("POST", "/users/bulk", map[string]any{"users": in})
		require.Equal(t, http.StatusCreated, r.status, "%s", r.body)

		walk := func(q string, limit int) []user {
			var all []user
			cursor := ""
			for pages := 0; ; pages++ {
				require.Less(t, pages, 100)
				v := url.Values{"q": {q}, "limit": {fmt.Sprint(limit)}}
				if cursor != "" {
					v.Set("cursor", cursor)
				}
				r := ts.do("GET", "/users?"+v.Encode(), nil)
				require.Equal(t, http.StatusOK, r.status, "%s", r.body)
				var page pagination.Page[user]
				r.json(t, &page)
				require.LessOrEqual(t, len(page.Items), limit)
				all = append(all, page.Items...)
				if !page.HasMore {
					require.Empty(t, page.NextCursor)
					return all
				}
				cursor = page.NextCursor
			}
		}
		all := walk("", 10)
		require.Len(t, all, 45)
		for i := 1; i < len(all); i++ {
			require.Less(t, all[i-1].ID, all[i].ID, "users come in id order, each once")
		}
		alans := walk("alan", 4)
		require.Len(t, alans, 15, "q matches the full name's prefix, ignoring case")
		users1 := walk("USER1", 3)
		require.Len(t, users1, 10, "q matches the username's prefix")
		require.Empty(t, walk("%", 5), "LIKE wildcards in q match themselves")

		t.Run("a cursor of another search is refused", func(t *testing.T) {
			r := ts.do("GET", "/users?q=alan&limit=2", nil)
			var page pagination.Page[user]
			r.json(t, &page)
			r = ts.do("GET", "/users?q=grace&cursor="+url.QueryEscape(page.NextCursor), nil)
			require.Equal(t, http.StatusBadRequest, r.status)
			require.Equal(t, problemTypePrefix+"invalid-cursor", r.problem(t).Type)
		})
		t.Run("a write is seen by the next search at once", func(t *testing.T) {
			require.Len(t, walk("zed", 5), 0)
			r := ts.do("POST", "/users", map[string]string{"username": "zed", "email": "zed@example.com", "full_name": "Zed"})
			require.Equal(t, http.StatusCreated, r.status)
			require.Len(t, walk("zed", 5), 1)
		})
		t.Run("export streams every user as NDJSON", func(t *testing.T) {
			r := ts.do("GET", "/users/export", nil)
			require.Equal(t, http.StatusOK, r.status)
			require.Equal(t, "application/x-ndjson", r.header.Get("Content-Type"))
			sc := bufio.NewScanner(bytes.NewReader(r.body))
			n := 0
			for sc.Scan() {
				var u user
				require.NoError(t, json.Unmarshal(sc.Bytes(), &u))
				require.Positive(t, u.ID)
				n++
			}
			require.Equal(t, 46, n)
		})
	})
}

// TestUserCacheOff checks that USER_CACHE=off sends every read of a user,
// and every search, to the database, so that a load test can measure what
// the cache saves.
func TestUserCacheOff(t *testing.T) {
	t.Parallel()
	forEachDB(t, map[string]string{"USER_CACHE": "off", "LOG_LEVEL": "info"}, func(t *testing.T, ts *testServer) {
		require.Contains(t, ts.logs.String(), `cache="off: every read goes to the database"`)
		var u user
		ts.do("POST", "/users", map[string]string{"username": "uncached", "email": "u@example.com", "full_name": "U"}).json(t, &u)
		for range 3 {
			require.Equal(t, http.StatusOK, ts.do("GET", fmt.Sprintf("/users/%d", u.ID), nil).status)
			require.Equal(t, http.StatusOK, ts.do("GET", "/users?q=unc", nil).status)
		}
		require.Zero(t, ts.metric(t, "cache_hits_total"))
		require.Zero(t, ts.metric(t, "cache_loads_total"))
		require.Zero(t, ts.metric(t, "search_cache_hits_total"))
		var renamed user
		ts.do("PUT", fmt.Sprintf("/users/%d", u.ID), map[string]string{"username": "uncached", "email": "u@example.com", "full_name": "V"}).json(t, &renamed)
		var got user
		ts.do("GET", fmt.Sprintf("/users/%d", u.ID), nil).json(t, &got)
		require.Equal(t, "V", got.FullName)
	})
}
