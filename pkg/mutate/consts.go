package mutate

// Every name the webhook reads from a pod or writes into one is declared here, once.

// Annotations read from the pod (and, for defaults, from its namespace).
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

// Defaults of the cluster configuration.
const (
	DefaultDriverName = "secrets-store.kvinject.io"
	DefaultMountPath  = "/mnt/secrets-store"
	DefaultMaxEntries = 64
	DefaultCloudName  = "AzurePublicCloud"
)
