package cli

import "strings"

// sanitize removes anything that looks like a credential from an error
// text (defence in depth: the SDK does not put secrets in errors).
func sanitize(s string) string {
	for _, marker := range []string{"X-Amz-Security-Token=", "X-Amz-Signature=", "X-Amz-Credential=", "Signature="} {
		from := 0
		for {
			i := strings.Index(s[from:], marker)
			if i < 0 {
				break
			}
			j := from + i + len(marker)
			k := j
			for k < len(s) && !strings.ContainsRune("&\" ,\n", rune(s[k])) {
				k++
			}
			s = s[:j] + "REDACTED" + s[k:]
			from = j + len("REDACTED")
		}
	}
	return s
}
