// Command bareserver is the ceiling that the example server is measured
// against: a bare net/http handler for GET /users/{id} that writes the
// same JSON as the example server's, from a map in memory, with nothing
// else on the path (no database, cache, rate limit, logging or metrics).
//
//	bareserver -addr 127.0.0.1:0 -user '{"id":1,"username":"ada",...}'
//
// It prints the address it listens on as its first line, and stops on
// SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// user has the fields, in the order, of the example server's user.
type user struct {
	ID        int64     `json:"id"`
	Username  string    `json:"username"`
	Email     string    `json:"email"`
	FullName  string    `json:"full_name"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bareserver:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "`host:port` to listen on")
	seed := flag.String("user", `{"id":1,"username":"ada","email":"ada@example.com","full_name":"Ada Lovelace","version":1}`,
		"the one user served, as the example server's JSON")
	flag.Parse()
	var u user
	if err := json.Unmarshal([]byte(*seed), &u); err != nil || u.ID < 1 {
		return fmt.Errorf("-user: not a user with an id: %v", err)
	}
	users := map[int64]user{u.ID: u}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		u, ok := users[id]
		if err != nil || !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(u)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
