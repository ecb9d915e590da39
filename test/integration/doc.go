// Package integration proves the webhook through the real kube-apiserver: which
// requests reach it (matchConditions), failurePolicy, reinvocation, dry-run, and that
// the API server accepts and stores the patch. Run with 'make test-integration'.
package integration
