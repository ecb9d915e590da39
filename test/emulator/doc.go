// Package emulator is an in-process Azure emulator for tests and demos: Key Vault
// (secrets, keys, certificates, versions, paging, the challenge-based bearer flow,
// access policies, the real error bodies), Entra ID (OpenID configuration, signing
// keys, the token endpoint for client secrets and federated client assertions), NMI
// (AAD Pod Identity) and IMDS (managed identity).
//
// # Reaching it
//
// Key Vault and Entra ID share one HTTPS listener, routed by Host header, with a
// certificate from a test CA generated at start (SANs *.vault.azure.net,
// *.vault.usgovcloudapi.net, *.vault.azure.cn, the three login hosts, localhost,
// 127.0.0.1). Clients keep the real host names (https://{vault}.vault.azure.net/,
// https://login.microsoftonline.com/) and reach the listener through a transport whose
// DialContext sends every dial to it (Emulator.HTTPClient; from another process,
// ClientFromEndpoints with the endpoints.json and ca.crt of Options.StateDir), so the
// unmodified Azure SDK clients work with all their checks on, challenge-resource
// verification included. The same transport sends 169.254.169.254 (IMDS) to the IMDS
// listener and dials loopback addresses (NMI) as given.
//
//	e, err := emulator.Start(ctx, emulator.Options{Seed: seed})
//	cred, err := azidentity.NewClientSecretCredential(tenant, clientID, secret,
//		&azidentity.ClientSecretCredentialOptions{
//			DisableInstanceDiscovery: true,
//			ClientOptions: azcore.ClientOptions{Transport: e.HTTPClient(),
//				Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: e.AuthorityHost()}}})
//	c, err := azsecrets.NewClient(e.VaultURL("az-key-vault-demo"), cred,
//		&azsecrets.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: e.HTTPClient()}})
//
// # State
//
// The state comes from a YAML Seed (see testdata/tutorial.yaml and testdata/sdk.yaml)
// and changes at run time through the Emulator's methods (SetSecret, SetEnabled,
// AddKey, AddCertificate, SetAccessPolicy, AddPrincipal, AddPodIdentity,
// AddFederatedCredential, AddManagedIdentity). Faults (SetFault) and request counters
// (Requests, Counters) let tests count SDK retries exactly.
//
// # Fidelity
//
// Paths, bodies, status codes, error codes and messages follow the service. Where the
// real message is not known, the emulator keeps the real status and code with a
// faithful message: a token with a known key ID but a bad signature
// ("AKV10000: Token signature validation failed."), a token not yet valid, the key
// and certificate "disabled" inner codes. Deliberate differences:
//   - an unknown vault host answers 404 VaultNotFound (in Azure its DNS name would
//     not resolve);
//   - faults apply only to requests that carry a valid token, so the unauthenticated
//     challenge round trip is never faulted and counts stay predictable;
//   - list responses use a small default page (DefaultPageSize) so paging is exercised;
//   - a disabled certificate is still returned by GET (only its backing secret and key
//     refuse).
//
// Logs go through logr; token and secret values are never logged.
package emulator
