package csi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kvinject/kvinject/internal/version"
)

// The plugin talks to the API server for a handful of requests (GET a
// SecretProviderClass, a namespace's or a pod's metadata; POST and PATCH an Event;
// list and watch KeyVaultAccessPolicies), so it uses this small client instead of
// client-go: client-go's machinery would add about 3 MiB to the resident memory of a
// process that runs on every node, and importing the Kubernetes API types alone
// (k8s.io/apimachinery/pkg/apis/meta/v1) added 2.5 MiB at 100 volumes (24.7 to
// 27.2 MiB, BenchmarkResidentMemory100Volumes) against a 25 MiB budget.

// In-cluster service-account files and environment.
const (
	inClusterTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	inClusterCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// ErrNoAPIServer is returned by NewKubeClient outside a cluster without a kubeconfig.
var ErrNoAPIServer = errors.New("no API server configured")

// KubeClient reaches the Kubernetes API server: it reads SecretProviderClass objects
// (ClassGetter) and records Events on pods (EventRecorder). Safe for concurrent use.
type KubeClient struct {
	host      string // https://host:port, no trailing slash
	http      *http.Client
	watchHTTP *http.Client // the same transport, without the client's timeout
	token     string       // static bearer token
	tokenFile string       // bearer token re-read on every request (projected tokens rotate)
	component string
	node      string
	events    eventCounts
}

// KubeClientOptions configures NewKubeClient.
type KubeClientOptions struct {
	// Kubeconfig is a kubeconfig file; "" means the in-cluster service account.
	Kubeconfig string
	// Component and Node are the events' source.
	Component, Node string
}

// NewKubeClient builds the client from a kubeconfig file (its current context: server,
// certificate-authority[-data], insecure-skip-tls-verify, token, tokenFile,
// client-certificate[-data], client-key[-data]; exec and auth-provider plugins are not
// supported) or, without one, from the in-cluster service account. Outside a cluster
// without a kubeconfig it returns ErrNoAPIServer.
func NewKubeClient(opts KubeClientOptions) (*KubeClient, error) {
	c := &KubeClient{component: opts.Component, node: opts.Node}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.Kubeconfig == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, ErrNoAPIServer
		}
		c.host = "https://" + net.JoinHostPort(host, port)
		c.tokenFile = inClusterTokenFile
		pool, err := poolFromFile(inClusterCAFile)
		if err != nil {
			return nil, err
		}
		tlsCfg.RootCAs = pool
	} else if err := c.loadKubeconfig(opts.Kubeconfig, tlsCfg); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", opts.Kubeconfig, err)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tlsCfg
	t.ForceAttemptHTTP2 = true
	c.http = &http.Client{Transport: t, Timeout: 30 * time.Second}
	c.watchHTTP = &http.Client{Transport: t}
	return c, nil
}

type kubeconfigFile struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthority     string `json:"certificate-authority"`
			CertificateAuthorityData []byte `json:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			Token                 string          `json:"token"`
			TokenFile             string          `json:"tokenFile"`
			ClientCertificate     string          `json:"client-certificate"`
			ClientCertificateData []byte          `json:"client-certificate-data"`
			ClientKey             string          `json:"client-key"`
			ClientKeyData         []byte          `json:"client-key-data"`
			Exec                  json.RawMessage `json:"exec"`
			AuthProvider          json.RawMessage `json:"auth-provider"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
}

func (c *KubeClient) loadKubeconfig(path string, tlsCfg *tls.Config) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var kc kubeconfigFile
	if err := yaml.Unmarshal(raw, &kc); err != nil {
		return fmt.Errorf("not a kubeconfig: %w", err)
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	var clusterName, userName string
	for _, x := range kc.Contexts {
		if x.Name == kc.CurrentContext || kc.CurrentContext == "" && len(kc.Contexts) == 1 {
			clusterName, userName = x.Context.Cluster, x.Context.User
		}
	}
	found := false
	for _, cl := range kc.Clusters {
		if cl.Name != clusterName {
			continue
		}
		found = true
		u, err := url.Parse(cl.Cluster.Server)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("cluster %q: server %q must be an https URL", cl.Name, cl.Cluster.Server)
		}
		c.host = strings.TrimSuffix(cl.Cluster.Server, "/")
		tlsCfg.InsecureSkipVerify = cl.Cluster.InsecureSkipTLSVerify
		switch {
		case len(cl.Cluster.CertificateAuthorityData) > 0:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(cl.Cluster.CertificateAuthorityData) {
				return fmt.Errorf("cluster %q: certificate-authority-data holds no certificate", cl.Name)
			}
			tlsCfg.RootCAs = pool
		case cl.Cluster.CertificateAuthority != "":
			if tlsCfg.RootCAs, err = poolFromFile(rel(cl.Cluster.CertificateAuthority)); err != nil {
				return err
			}
		}
	}
	if !found {
		return fmt.Errorf("no cluster for context %q", kc.CurrentContext)
	}
	for _, us := range kc.Users {
		if us.Name != userName {
			continue
		}
		u := us.User
		if len(u.Exec) > 0 && string(u.Exec) != "null" || len(u.AuthProvider) > 0 && string(u.AuthProvider) != "null" {
			return fmt.Errorf("user %q: exec and auth-provider credentials are not supported; use a token, a token file or a client certificate", us.Name)
		}
		c.token, c.tokenFile = u.Token, rel(u.TokenFile)
		certPEM, keyPEM := u.ClientCertificateData, u.ClientKeyData
		if u.ClientCertificate != "" {
			if certPEM, err = os.ReadFile(rel(u.ClientCertificate)); err != nil {
				return err
			}
		}
		if u.ClientKey != "" {
			if keyPEM, err = os.ReadFile(rel(u.ClientKey)); err != nil {
				return err
			}
		}
		if len(certPEM) > 0 {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return fmt.Errorf("user %q: client certificate: %w", us.Name, err)
			}
			tlsCfg.Certificates = []tls.Certificate{pair}
		}
	}
	return nil
}

func poolFromFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// apiError is a Kubernetes Status answer.
type apiError struct {
	Code    int
	Reason  string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("API server answered %d %s: %s", e.Code, e.Reason, e.Message)
}

// doPatch sends a JSON merge patch.
func (c *KubeClient) doPatch(ctx context.Context, path string, patch any) error {
	return c.send(ctx, http.MethodPatch, path, "application/merge-patch+json", patch, nil)
}

// do sends one request and decodes a JSON answer into out (when non-nil).
func (c *KubeClient) do(ctx context.Context, method, path string, body, out any) error {
	return c.send(ctx, method, path, "application/json", body, out)
}

func (c *KubeClient) send(ctx context.Context, method, path, contentType string, body, out any) error {
	req, err := c.newRequest(ctx, method, path, contentType, body)
	if err != nil {
		return err
	}
	return c.exchange(req, out)
}

// exchange sends req and decodes a JSON answer of at most 4 MiB into out (when
// non-nil); an answer other than 2xx is a statusError.
func (c *KubeClient) exchange(req *http.Request, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return statusError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// metadataAccept asks the API server for an object's metadata only.
const metadataAccept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

// getMetadata GETs the metadata of the object at path into out.
func (c *KubeClient) getMetadata(ctx context.Context, path string, out any) error {
	req, err := c.newRequest(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", metadataAccept+", application/json")
	return c.exchange(req, out)
}

// stream GETs path (a watch) and hands the open body's decoder to read, which returns
// when the stream ends or it has had enough.
func (c *KubeClient) stream(ctx context.Context, path string, read func(*json.Decoder) error) error {
	req, err := c.newRequest(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return err
	}
	resp, err := c.watchHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return statusError(resp.StatusCode, data)
	}
	return read(json.NewDecoder(resp.Body))
}

func (c *KubeClient) newRequest(ctx context.Context, method, path, contentType string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.host+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", "kvinject-csi-node/"+version.Get())
	token := c.token
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read service-account token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, nil
}

// statusError decodes a Kubernetes Status answer.
func statusError(code int, data []byte) error {
	e := &apiError{Code: code}
	var st struct{ Reason, Message string }
	if json.Unmarshal(data, &st) == nil {
		e.Reason, e.Message = st.Reason, st.Message
	}
	return e
}
