package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// api stands in for the HTTP API: it names itself in its answers.
var api = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Handler", "api")
	w.WriteHeader(http.StatusTeapot)
})

func get(t *testing.T, h http.Handler, method, path, accept string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestMount(t *testing.T) {
	h := Mount(api)
	const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	for _, tc := range []struct {
		name, method, path, accept string
		status                     int
		location, handler, ctype   string
	}{
		{"a browser at the root", "GET", "/", browser, http.StatusFound, "/ui/", "", ""},
		{"a script at the root", "GET", "/", "application/json", http.StatusTeapot, "", "api", ""},
		{"a post at the root", "POST", "/", browser, http.StatusTeapot, "", "api", ""},
		{"the prefix without its slash", "GET", "/ui", browser, http.StatusMovedPermanently, "/ui/", "", ""},
		{"the page", "GET", "/ui/", browser, http.StatusOK, "", "", "text/html; charset=utf-8"},
		{"a module", "GET", "/ui/app.js", "*/*", http.StatusOK, "", "", "text/javascript; charset=utf-8"},
		{"the styles", "GET", "/ui/style.css", "*/*", http.StatusOK, "", "", "text/css; charset=utf-8"},
		{"the icon", "GET", "/ui/icon.svg", "*/*", http.StatusOK, "", "", "image/svg+xml"},
		{"no such file", "GET", "/ui/nothing.js", "*/*", http.StatusNotFound, "", "", ""},
		{"no climbing out", "GET", "/ui/../dashboard.go", "*/*", http.StatusNotFound, "", "", ""},
		{"a post to the page", "POST", "/ui/", browser, http.StatusMethodNotAllowed, "", "", ""},
		{"the API", "GET", "/api/v1/summary", "application/json", http.StatusTeapot, "", "api", ""},
		{"health", "GET", "/healthz", "", http.StatusTeapot, "", "api", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(t, h, tc.method, tc.path, tc.accept)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if got := rec.Header().Get("Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			if got := rec.Header().Get("X-Handler"); got != tc.handler {
				t.Errorf("handled by %q, want %q", got, tc.handler)
			}
			if tc.ctype != "" {
				if got := rec.Header().Get("Content-Type"); got != tc.ctype {
					t.Errorf("Content-Type %q, want %q", got, tc.ctype)
				}
				if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
					t.Errorf("Content-Security-Policy %q", csp)
				}
				if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
					t.Error("no nosniff")
				}
			}
		})
	}
}

func TestRevalidation(t *testing.T) {
	h := Handler()
	first := get(t, h, "GET", "/ui/app.js", "")
	tag := first.Header().Get("ETag")
	if tag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q Cache-Control %q", tag, first.Header().Get("Cache-Control"))
	}
	again := get(t, h, "GET", "/ui/app.js", "", "If-None-Match", tag)
	if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
		t.Errorf("revalidation: %d with %d bytes, want 304 and none", again.Code, again.Body.Len())
	}
	if other := get(t, h, "GET", "/ui/app.js", "", "If-None-Match", `"other"`); other.Code != http.StatusOK {
		t.Errorf("another tag: %d, want 200", other.Code)
	}
	head := get(t, h, "HEAD", "/ui/", "")
	if head.Code != http.StatusOK || head.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d bytes", head.Code, head.Body.Len())
	}
}

// TestSelfContained checks that the page loads nothing from elsewhere: no
// absolute URL in a src, href or import, and no inline script or style the
// Content-Security-Policy would refuse.
func TestSelfContained(t *testing.T) {
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["'](https?:)?//|import[^;]*from\s*["'](https?:)?//|url\(\s*["']?(https?:)?//`)
	inline := regexp.MustCompile(`(?i)<script(?:\s+[^>]*)?>\s*[^<\s]|<style|\sstyle\s*=|\son[a-z]+\s*=`)
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := static.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s refers outside the gateway: %s", path, m)
		}
		if strings.HasSuffix(path, ".html") {
			if m := inline.Find(b); m != nil {
				t.Errorf("%s has inline code or style: %s", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
