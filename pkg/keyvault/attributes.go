package keyvault

// Volume attribute keys, as the Azure provider for the Secrets Store CSI driver names
// them in a SecretProviderClass's parameters. The webhook writes them into the inline
// volume; the node plugin reads them from the inline volume or from the
// SecretProviderClass the volume names.
const (
	// AttrKeyVaultName is the vault's name (the first label of its DNS name).
	AttrKeyVaultName = "keyvaultName"
	// AttrTenantID is the vault's Entra ID tenant.
	AttrTenantID = "tenantId"
	// AttrCloudName selects the Azure cloud (AzurePublicCloud when empty).
	AttrCloudName = "cloudName"
	// AttrUsePodIdentity is "true" for AAD Pod Identity (token from NMI).
	AttrUsePodIdentity = "usePodIdentity"
	// AttrUseVMManagedIdentity asks for the node's identity; kvinject refuses it.
	AttrUseVMManagedIdentity = "useVMManagedIdentity"
	// AttrUserAssignedIdentityID names a VM user-assigned identity; kvinject refuses it.
	AttrUserAssignedIdentityID = "userAssignedIdentityID"
	// AttrClientID is the workload identity's client ID.
	AttrClientID = "clientID"
	// AttrObjects is the object list: YAML "array:" of YAML strings, one per object.
	AttrObjects = "objects"
	// AttrSecretProviderClass names a SecretProviderClass in the pod's namespace.
	AttrSecretProviderClass = "secretProviderClass"
)

// Cloud names accepted in AttrCloudName.
const (
	CloudPublic       = "AzurePublicCloud"
	CloudUSGovernment = "AzureUSGovernmentCloud"
	CloudChina        = "AzureChinaCloud"
	CloudStack        = "AzureStackCloud"
)
