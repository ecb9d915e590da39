package contract

// Annotations read from a pod (and, for defaults, from its namespace).
const (
	// AnnotationSecrets is the alias list; its presence turns injection on.
	AnnotationSecrets = "kvinject.io/secrets"
	// AnnotationVault is the Key Vault name. Pod, then namespace, then cluster config.
	AnnotationVault = "kvinject.io/vault"
	// AnnotationIdentity is the AAD Pod Identity binding selector. Pod, then
	// namespace, then cluster config.
	AnnotationIdentity = "kvinject.io/identity"
	// AnnotationClientID is the workload identity client ID (pod only; else the
	// service account's AnnotationWorkloadClientID).
	AnnotationClientID = "kvinject.io/client-id"
	// AnnotationTenantID is the Entra ID tenant. Pod, then namespace, then cluster config.
	AnnotationTenantID = "kvinject.io/tenant-id"
	// AnnotationMountPath is where the volume is mounted (default DefaultMountPath).
	AnnotationMountPath = "kvinject.io/mount-path"
	// AnnotationContainers is a comma list of the containers (regular or init) that
	// mount the volume; all of them when absent.
	AnnotationContainers = "kvinject.io/containers"
	// AnnotationStatus is written by the webhook: StatusInjected.
	AnnotationStatus = "kvinject.io/status"

	// AnnotationWorkloadClientID is the azure-workload-identity annotation on a
	// ServiceAccount naming the client ID of its identity.
	AnnotationWorkloadClientID = "azure.workload.identity/client-id"
)

// StatusInjected is the value of AnnotationStatus on an injected pod.
const StatusInjected = "injected"

// LabelPodIdentity is AAD Pod Identity's binding label; NMI gives a pod the identity
// whose AzureIdentityBinding selector equals the label's value.
const LabelPodIdentity = "aadpodidbinding"

// VolumeName is the name of the injected volume.
const VolumeName = "kvinject-secrets"

// DefaultMountPath is where the volume is mounted when the pod does not say.
const DefaultMountPath = "/mnt/secrets-store"

// DefaultMaxObjects is the most Key Vault objects one volume may list, unless
// configured otherwise: the webhook's maxEntries and the node plugin's
// --max-objects-per-volume default to it, so a volume the webhook accepts is one the
// plugin serves. MaxObjectsLimit is the most either may be configured to.
const (
	DefaultMaxObjects = 64
	MaxObjectsLimit   = 1000
)
