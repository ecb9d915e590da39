package mutate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kvinject/kvinject/pkg/contract"
	"github.com/kvinject/kvinject/pkg/policy"
)

// Denial is a reason to refuse a pod at admission: something the pod's author must
// fix. Its message names the annotation, the entry and the rule.
type Denial struct {
	// Annotation is the annotation at fault, empty for a conflict with the pod spec.
	Annotation string
	// Entry is the 1-based number of the alias-list entry at fault, 0 for none.
	Entry int
	// Text is the entry as written (trimmed), empty for none.
	Text string
	// Rule says what is wrong and how to fix it.
	Rule string
	// Policy is set when a KeyVaultAccessPolicy refuses the pod.
	Policy *policy.Error
}

// maxEchoed bounds how much of a user's entry a message repeats.
const maxEchoed = 160

func (d *Denial) Error() string {
	var b strings.Builder
	if d.Annotation != "" {
		b.WriteString(d.Annotation)
		b.WriteString(": ")
	}
	if d.Entry > 0 {
		text := d.Text
		if len(text) > maxEchoed {
			text = text[:maxEchoed] + "..."
		}
		fmt.Fprintf(&b, "entry %d %q: ", d.Entry, text)
	}
	b.WriteString(d.Rule)
	return b.String()
}

func deny(annotation, format string, args ...any) *Denial {
	return &Denial{Annotation: annotation, Rule: fmt.Sprintf(format, args...)}
}

// ParseSecrets parses the kvinject.io/secrets alias list (contract.ParseAliasList),
// turning what is wrong with it into a *Denial that names the annotation.
func ParseSecrets(list string, maxEntries int) ([]contract.Object, error) {
	objects, err := contract.ParseAliasList(list, maxEntries)
	if err != nil {
		var e *contract.EntryError
		if errors.As(err, &e) {
			return nil, &Denial{Annotation: contract.AnnotationSecrets, Entry: e.Entry, Text: e.Text, Rule: e.Rule}
		}
		return nil, err
	}
	return objects, nil
}
