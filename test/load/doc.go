// Package load measures the admission webhook over HTTPS: it serves the real webhook
// (pkg/webhook's server and handler, a static lookup, a throw-away certificate)
// in-process on 127.0.0.1, or targets a running one by URL, and drives it with
// concurrent keep-alive clients posting the realistic review of package fixture. It
// reports reviews per second, latency percentiles, errors and CPU use.
//
// The in-process server and the clients share the machine: on a small machine the
// figures are those of both, which is stated in the report.
package load
