// Package keyvault reads a volume's Key Vault objects with the unmodified Azure SDK
// clients and turns them into files: Source (one vault's secrets, keys and
// certificates for one credential), Fetch (every object of a volume, concurrently, all
// or nothing), the renderers (values, public keys, certificate chains, PFX) and the
// error classes whose messages name the vault, the object and Key Vault's error code.
//
// What a volume asks for (contract.Object) is defined in package contract, which the
// webhook shares without linking the SDK.
package keyvault
