// Package webhook serves the mutating admission webhook: the configuration, the
// admission handler that applies package mutate to pods, its metrics, the lookups of
// namespace and service-account annotations, and the wiring of a controller-runtime
// manager around them (TLS that follows certificate renewals, health and readiness
// probes, Prometheus metrics, graceful shutdown).
package webhook
