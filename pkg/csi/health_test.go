package csi

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

// TestHealthProbesTheCSISocket: /healthz and /readyz answer ok only while the CSI
// socket answers Probe; a socket that is gone or has no server fails them.
func TestHealthProbesTheCSISocket(t *testing.T) {
	t.Parallel()
	socket := filepath.Join(t.TempDir(), "csi.sock")
	h := httptest.NewServer(healthHandler(socket))
	t.Cleanup(h.Close)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, socket) {
		t.Fatalf("no socket: %d %q", code, body)
	}

	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	csi.RegisterIdentityServer(srv, NewIdentityServer("x.example.com", "v0"))
	go func() { _ = srv.Serve(ln) }()
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != http.StatusOK || body != "ok\n" {
			t.Fatalf("%s with a serving socket: %d %q", path, code, body)
		}
	}
	srv.Stop()
	_ = os.Remove(socket)
	if code, _ := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("after the server stopped: %d", code)
	}
}
