package emulator

import (
	"crypto/tls"
	"errors"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
)

// serve starts one server per listener.
func (e *Emulator) serve() {
	e.kvMux = e.keyVaultMux()
	e.entraMux = e.newEntraMux()
	https := e.newServer(http.HandlerFunc(e.routeHTTPS))
	https.TLSConfig = e.tls.serverConfig()
	if !e.tls.http2 {
		// HTTP/1.1 only unless asked: faults then reset whole connections simply.
		https.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	e.start(https, func() error { return https.ServeTLS(e.httpsLn, "", "") })
	if e.proxyLn != nil {
		s := e.newServer(e.proxyHandler())
		e.start(s, func() error { return s.Serve(e.proxyLn) })
	}
	if e.nmiLn != nil {
		s := e.newServer(e.nmiHandler())
		e.start(s, func() error { return s.Serve(e.nmiLn) })
	}
	if e.imdsLn != nil {
		s := e.newServer(e.imdsHandler())
		e.start(s, func() error { return s.Serve(e.imdsLn) })
	}
}

func (e *Emulator) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logWriter{e.log}, "", 0),
	}
}

func (e *Emulator) start(s *http.Server, run func() error) {
	e.servers = append(e.servers, s)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			e.log.Error(err, "Server stopped")
		}
	}()
}

// routeHTTPS dispatches by Host header: Key Vault hosts, Entra ID hosts, else 404.
func (e *Emulator) routeHTTPS(w http.ResponseWriter, r *http.Request) {
	host := requestHost(r)
	if name, cloud, ok := vaultHost(host); ok {
		e.serveKeyVault(w, r, host, name, cloud)
		return
	}
	if _, ok := loginHost(host); ok {
		e.entraMux.ServeHTTP(w, r)
		return
	}
	e.log.V(1).Info("Request for an unknown host", "host", host, "path", r.URL.Path)
	writeJSON(w, http.StatusNotFound, map[string]string{
		"error": "unknown host " + host + ": this emulator serves *." + PublicCloud.VaultSuffix + ", " +
			strings.Join([]string{PublicCloud.LoginHost, USGovCloud.LoginHost, ChinaCloud.LoginHost}, ", ") + " and their sovereign-cloud equivalents",
	})
}

// logWriter sends net/http's internal error log (TLS handshake errors...) to logr.
type logWriter struct{ log logr.Logger }

func (l logWriter) Write(p []byte) (int, error) {
	l.log.V(2).Info("HTTP server", "message", strings.TrimSpace(string(p)))
	return len(p), nil
}
