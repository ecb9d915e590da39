package csi

import (
	"sort"
	"strings"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/identity"
)

// minRedactLen is the shortest sensitive string scrubbed from text: shorter ones would
// redact ordinary words and hide nothing worth hiding.
const minRedactLen = 4

// redactor removes known credentials (service-account tokens, every value of the
// nodePublishSecretRef Secret) from text bound for an error, an event or a log line. It
// is a second line of defence: messages are built without them in the first place. It
// holds no file content (a volume's files can take megabytes, which it would copy).
type redactor struct{ secrets []string }

func (r *redactor) add(s ...string) {
	for _, v := range s {
		if len(strings.TrimSpace(v)) >= minRedactLen {
			r.secrets = append(r.secrets, v)
		}
	}
}

func (r *redactor) scrub(text string) string {
	if len(r.secrets) == 0 {
		return text
	}
	s := append([]string(nil), r.secrets...)
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	for _, v := range s {
		if strings.Contains(text, v) {
			text = strings.ReplaceAll(text, v, "[REDACTED]")
		}
	}
	return text
}

// requestRedactor knows every credential of a request: the secrets map's values and
// the kubelet's service-account tokens.
func requestRedactor(vc, secrets map[string]string) *redactor {
	r := &redactor{}
	for _, v := range secrets {
		// Every value, the client ID too: a Secret with its keys swapped holds the
		// client secret there.
		r.add(v)
	}
	for _, raw := range []string{secrets[contract.ContextTokens], vc[contract.ContextTokens]} {
		if raw == "" {
			continue
		}
		r.add(raw)
		if toks, err := identity.ParseServiceAccountTokens(raw); err == nil {
			for _, t := range toks {
				r.add(t.Token)
			}
		}
	}
	return r
}
