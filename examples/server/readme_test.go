package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReadmeTour runs the requests of the README's tour, as a new user
// would paste them, against a fresh server: every one must succeed, and
// the transfer retried with its Idempotency-Key must move the money once.
func TestReadmeTour(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	readme := string(raw)
	start, end := strings.Index(readme, "<!-- tour:start -->"), strings.Index(readme, "<!-- tour:end -->")
	require.True(t, start >= 0 && end > start, "the README has no tour between its markers")
	cmds := tourCommands(readme[start:end])
	require.NotEmpty(t, cmds)

	ts := startServer(t, "sqlite", map[string]string{"UPLOAD_DIR": t.TempDir()})
	vars := map[string]string{}
	dir := t.TempDir()
	for _, cmd := range cmds {
		t.Logf("$ %s", cmd)
		words, err := shellWords(cmd, vars)
		require.NoError(t, err, cmd)
		if len(words) >= 2 && words[0] == "printf" && words[len(words)-2] == ">" {
			// printf 'text' > file: a file for the upload to send.
			text := strings.ReplaceAll(words[1], `\n`, "\n")
			require.NoError(t, os.WriteFile(filepath.Join(dir, words[len(words)-1]), []byte(text), 0o600))
			continue
		}
		assign := ""
		if m := regexp.MustCompile(`^([A-Z_]+)=\$\((.*) \| jq -r \.([a-z_]+)\)$`).FindStringSubmatch(cmd); m != nil {
			assign = m[1]
			words, err = shellWords(m[2], vars)
			require.NoError(t, err)
			cmd = m[3] // the field to extract
		}
		resp := ts.curl(t, words, dir)
		require.Less(t, resp.status, 300, "%v answered %d: %s", words, resp.status, resp.body)
		if assign != "" {
			var obj map[string]any
			require.NoError(t, json.Unmarshal(resp.body, &obj), "%s", resp.body)
			v, ok := obj[cmd].(string)
			require.True(t, ok, "no string field %q in %s", cmd, resp.body)
			vars[assign] = v
		}
	}
	var acct account
	ts.do("GET", "/accounts/2", nil).json(t, &acct)
	require.EqualValues(t, 2500, acct.Balance, "the retried transfer moved the money once")
}

// tourCommands returns the shell commands of a fenced block, with
// continuation lines joined and comments dropped.
func tourCommands(block string) []string {
	var cmds []string
	cur := ""
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "```") || strings.HasPrefix(line, "<!--") {
			continue
		}
		if c, ok := strings.CutSuffix(line, `\`); ok {
			cur += c
			continue
		}
		cmds = append(cmds, cur+line)
		cur = ""
	}
	return cmds
}

// shellWords splits a command as sh would: single and double quotes, and
// $NAME taken from vars outside single quotes.
func shellWords(cmd string, vars map[string]string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
	)
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
		case c == '\'':
			j := strings.IndexByte(cmd[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated quote in %s", cmd)
			}
			cur.WriteString(cmd[i+1 : i+1+j])
			i, inWord = i+1+j, true
		case c == '"':
			j := strings.IndexByte(cmd[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated quote in %s", cmd)
			}
			cur.WriteString(expand(cmd[i+1:i+1+j], vars))
			i, inWord = i+1+j, true
		case c == '$':
			j := i + 1
			for j < len(cmd) && (cmd[j] == '_' || cmd[j] >= 'A' && cmd[j] <= 'Z') {
				j++
			}
			cur.WriteString(vars[cmd[i+1:j]])
			i, inWord = j-1, true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func expand(s string, vars map[string]string) string {
	return regexp.MustCompile(`\$[A-Z_]+`).ReplaceAllStringFunc(s, func(v string) string { return vars[v[1:]] })
}

// curl runs the request a curl command line describes, with the flags the
// tour uses: -s, -i, -N, -X, -H, -d and -F (with @file read from dir).
func (ts *testServer) curl(t *testing.T, words []string, dir string) *response {
	t.Helper()
	require.Equal(t, "curl", words[0])
	method, target := "", ""
	header := http.Header{}
	var (
		body  io.Reader
		form  *multipart.Writer
		formB bytes.Buffer
	)
	for i := 1; i < len(words); i++ {
		switch w := words[i]; w {
		case "-s", "-i", "-N", "-sN", "-si":
		case "-X":
			i++
			method = words[i]
		case "-H":
			i++
			k, v, _ := strings.Cut(words[i], ":")
			header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		case "-d":
			i++
			body = strings.NewReader(words[i])
			if method == "" {
				method = "POST"
			}
		case "-F":
			i++
			if form == nil {
				form = multipart.NewWriter(&formB)
			}
			k, v, _ := strings.Cut(words[i], "=")
			if name, ok := strings.CutPrefix(v, "@"); ok {
				f, err := form.CreateFormFile(k, name)
				require.NoError(t, err)
				data, err := os.ReadFile(filepath.Join(dir, name))
				require.NoError(t, err)
				_, _ = f.Write(data)
			} else {
				require.NoError(t, form.WriteField(k, v))
			}
			if method == "" {
				method = "POST"
			}
		default:
			require.False(t, strings.HasPrefix(w, "-"), "the tour uses curl flag %s, which this test does not know", w)
			target = w
		}
	}
	if form != nil {
		require.NoError(t, form.Close())
		body = &formB
		header.Set("Content-Type", form.FormDataContentType())
	}
	if method == "" {
		method = "GET"
	}
	target = strings.Replace(target, "localhost:8080", strings.TrimPrefix(ts.base, "http://"), 1)
	if !strings.HasPrefix(target, "http://") {
		target = "http://" + target
	}
	req, err := http.NewRequest(method, target, body)
	require.NoError(t, err)
	req.Header = header
	resp, err := ts.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &response{status: resp.StatusCode, header: resp.Header, body: raw}
}
