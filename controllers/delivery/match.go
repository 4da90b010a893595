package delivery

import "strings"

// TypeMatches reports whether an event type matches a subscription's patterns: an exact
// name, a prefix pattern "family.*" (any type starting with "family."), or "*". Letter
// case does not count.
func TypeMatches(patterns []string, eventType string) bool {
	eventType = strings.ToLower(eventType)
	for _, p := range patterns {
		p = strings.ToLower(p)
		switch {
		case p == "*":
			return true
		case strings.HasSuffix(p, ".*"):
			if strings.HasPrefix(eventType, strings.TrimSuffix(p, "*")) {
				return true
			}
		case p == eventType:
			return true
		}
	}
	return false
}
