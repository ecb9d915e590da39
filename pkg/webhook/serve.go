package webhook

import "context"

// Serve serves h at Path over HTTPS the way Run does (the same controller-runtime
// server, TLS settings and certificate reloading from cfg.CertDir) but without a
// manager: no API server, informers, metrics or probe endpoints. Only cfg's Host,
// Port, CertDir, CertName, KeyName and CertPollInterval are used. It blocks until ctx
// is cancelled and in-flight reviews are done, or the server fails. It exists so load
// tests measure the real serving path in-process; the program uses Run.
func Serve(ctx context.Context, cfg Config, h *Handler) error {
	server, certs, err := newServer(cfg)
	if err != nil {
		return err
	}
	server.Register(Path, admissionWebhook(h))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watched := make(chan error, 1)
	go func() { watched <- certs.Start(ctx) }()
	err = server.Start(ctx)
	cancel()
	if werr := <-watched; err == nil {
		err = werr
	}
	return err
}
