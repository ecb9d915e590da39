package contract

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

// Keys the kubelet adds to a CSI volume context (CSIDriver podInfoOnMount: true,
// tokenRequests) and, for the tokens on Kubernetes 1.35 and later with
// serviceAccountTokenInSecrets, to the request's secrets.
const (
	ContextPodName        = "csi.storage.k8s.io/pod.name"
	ContextPodNamespace   = "csi.storage.k8s.io/pod.namespace"
	ContextPodUID         = "csi.storage.k8s.io/pod.uid"
	ContextServiceAccount = "csi.storage.k8s.io/serviceAccount.name"
	ContextEphemeral      = "csi.storage.k8s.io/ephemeral"
	ContextTokens         = "csi.storage.k8s.io/serviceAccount.tokens"
)

// Keys of a nodePublishSecretRef Secret for the service principal mode.
const (
	SecretClientID     = "clientid"
	SecretClientSecret = "clientsecret"
)

// DefaultTokenAudience is the audience of the service-account token the kubelet hands
// the node plugin (CSIDriver tokenRequests) and that Entra ID accepts in exchange for
// a workload identity's token. The chart's csi.tokenAudience sets both ends.
const DefaultTokenAudience = "api://AzureADTokenExchange"
