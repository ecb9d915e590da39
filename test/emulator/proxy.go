package emulator

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The proxy listener is an HTTP CONNECT proxy, the kind a corporate network puts
// between a node and Azure. A client given HTTPS_PROXY=http://<ProxyAddr> (and the test
// CA through SSL_CERT_FILE) reaches Key Vault and Entra ID under their real host names
// with no change of its own: every tunnel to port 443 of a host the emulator serves
// ends at the HTTPS listener. Tunnels to any other host are refused with 403, so a
// test notices a client that would have left the machine.

// proxyState counts what went through the proxy and holds the open tunnels, which
// Close ends.
type proxyState struct {
	tunnels atomic.Int64
	refused atomic.Int64
	open    sync.Map // net.Conn -> struct{}
	wg      sync.WaitGroup
}

// closeTunnels ends every open tunnel and waits for their copiers.
func (p *proxyState) closeTunnels() {
	p.open.Range(func(k, _ any) bool {
		_ = k.(net.Conn).Close()
		return true
	})
	p.wg.Wait()
}

func (e *Emulator) proxyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "this proxy only tunnels HTTPS (CONNECT host:443)", http.StatusMethodNotAllowed)
			return
		}
		host, port, err := net.SplitHostPort(r.Host)
		if err != nil || port != "443" || !e.serves(host) {
			e.proxy.refused.Add(1)
			e.log.V(1).Info("Proxy refused a tunnel", "target", r.Host)
			http.Error(w, "the Azure emulator's proxy does not reach "+r.Host, http.StatusForbidden)
			return
		}
		backend, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(r.Context(), "tcp", e.Addr())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			backend.Close()
			http.Error(w, "cannot hijack", http.StatusInternalServerError)
			return
		}
		client, buf, err := hj.Hijack()
		if err != nil {
			backend.Close()
			return
		}
		e.proxy.tunnels.Add(1)
		_, _ = client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		if n := buf.Reader.Buffered(); n > 0 {
			pending, _ := buf.Reader.Peek(n)
			_, _ = backend.Write(pending)
		}
		e.proxy.open.Store(client, struct{}{})
		e.proxy.open.Store(backend, struct{}{})
		e.proxy.wg.Add(1)
		go func() {
			defer e.proxy.wg.Done()
			splice(client, backend)
			e.proxy.open.Delete(client)
			e.proxy.open.Delete(backend)
		}()
	})
}

// splice copies both ways until either side closes, then closes both.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}

// serves reports whether host is one the HTTPS listener answers for.
func (e *Emulator) serves(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if _, _, ok := vaultHost(host); ok {
		return true
	}
	_, ok := loginHost(host)
	return ok
}

// ProxyAddr is the host:port of the CONNECT proxy listener, "" when disabled.
func (e *Emulator) ProxyAddr() string { return addrOf(e.proxyLn) }

// ProxyURL is the proxy's URL for HTTPS_PROXY, "http://{ProxyAddr}", "" when disabled.
func (e *Emulator) ProxyURL() string {
	if e.proxyLn == nil {
		return ""
	}
	return "http://" + e.ProxyAddr()
}

// Connections is how many TLS handshakes the HTTPS listener began (one per new client
// connection, however it arrived), and how many tunnels the proxy opened and refused.
type Connections struct {
	TLSHandshakes int
	ProxyTunnels  int
	ProxyRefusals int
}

// Connections returns the connection counters.
func (e *Emulator) Connections() Connections {
	return Connections{
		TLSHandshakes: int(e.tls.handshakes.Load()),
		ProxyTunnels:  int(e.proxy.tunnels.Load()),
		ProxyRefusals: int(e.proxy.refused.Load()),
	}
}

// ResetConnections sets the connection counters to zero.
func (e *Emulator) ResetConnections() {
	e.tls.handshakes.Store(0)
	e.proxy.tunnels.Store(0)
	e.proxy.refused.Store(0)
}
