// Package keyvault describes the Key Vault objects a volume asks for, and turns fetched
// objects into files.
//
// The description travels from the webhook to the node plugin as the volume attributes
// of the Azure provider's SecretProviderClass (keyvaultName, tenantId, objects, ...), so
// one parser, ParseObjects, serves inline volumes and SecretProviderClass objects alike.
package keyvault
