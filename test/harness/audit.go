package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// AuditPolicyFor logs every request of user at the Metadata level, nothing else.
func AuditPolicyFor(user string) string {
	return `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["` + user + `"]
- level: None
`
}

// Permission is one verb on one resource ("jobs", "funnelevents/status") of an API group
// ("" for the core group).
type Permission struct {
	Group, Resource, Verb string
}

func (p Permission) String() string {
	g := p.Group
	if g == "" {
		g = "core"
	}
	return fmt.Sprintf("%s %s/%s", p.Verb, g, p.Resource)
}

// Use is how often a permission was used, and how often the authorizer refused it.
type Use struct {
	Allowed, Forbidden int
}

type auditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ImpersonatedUser *struct {
		Username string `json:"username"`
	} `json:"impersonatedUser"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		APIGroup    string `json:"apiGroup"`
	} `json:"objectRef"`
	Annotations map[string]string `json:"annotations"`
}

// impersonateServiceAccounts is the permission a request made as another user (a
// ServiceAccount) uses of the requester's own.
var impersonateServiceAccounts = Permission{Group: "", Resource: "serviceaccounts", Verb: "impersonate"}

// UsedPermissions reads an audit log (JSON lines) and returns the resource permissions
// user exercised, from the ResponseComplete stage of each request. A request user made as
// a ServiceAccount (impersonation) used user's "impersonate serviceaccounts", not the
// permission the request itself needed: that was the ServiceAccount's (see
// ImpersonatedPermissions).
func UsedPermissions(auditLog, user string) (map[Permission]Use, error) {
	out := map[Permission]Use{}
	err := eachRequest(auditLog, user, func(ev auditEvent, p Permission) {
		if ev.ImpersonatedUser != nil {
			p = impersonateServiceAccounts
		}
		u := out[p]
		if forbidden(ev) {
			u.Forbidden++
		} else {
			u.Allowed++
		}
		out[p] = u
	})
	return out, err
}

// ImpersonatedPermissions returns, per user user acted as, the permissions those requests
// needed, and whether the authorizer granted them to that user.
func ImpersonatedPermissions(auditLog, user string) (map[string]map[Permission]Use, error) {
	out := map[string]map[Permission]Use{}
	err := eachRequest(auditLog, user, func(ev auditEvent, p Permission) {
		if ev.ImpersonatedUser == nil {
			return
		}
		as := ev.ImpersonatedUser.Username
		if out[as] == nil {
			out[as] = map[Permission]Use{}
		}
		u := out[as][p]
		if forbidden(ev) {
			u.Forbidden++
		} else {
			u.Allowed++
		}
		out[as][p] = u
	})
	return out, err
}

// forbidden: the authorizer refused the request, or, before it ran, the requester's
// impersonation was refused (a 403 with no authorization decision; the audit log then
// shows no impersonated user).
func forbidden(ev auditEvent) bool {
	decision := ev.Annotations["authorization.k8s.io/decision"]
	return decision == "forbid" || (decision == "" && ev.ResponseStatus != nil && ev.ResponseStatus.Code == 403)
}

// eachRequest calls fn for each completed resource request of user in the audit log.
func eachRequest(auditLog, user string, fn func(auditEvent, Permission)) error {
	b, err := os.ReadFile(auditLog)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("harness: audit log line %q: %w", sc.Text(), err)
		}
		if ev.User.Username != user || ev.ObjectRef == nil || ev.Stage != "ResponseComplete" {
			continue
		}
		p := Permission{Group: ev.ObjectRef.APIGroup, Resource: ev.ObjectRef.Resource, Verb: ev.Verb}
		if ev.ObjectRef.Subresource != "" {
			p.Resource += "/" + ev.ObjectRef.Subresource
		}
		fn(ev, p)
	}
	return sc.Err()
}

// GrantedPermissions expands the rules of the Roles and ClusterRoles in the YAML files
// (multi-document files are fine; other kinds are skipped) into single permissions.
func GrantedPermissions(files ...string) (map[Permission]bool, error) {
	out := map[Permission]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for doc := range strings.SplitSeq(string(b), "\n---") {
			var obj struct {
				Kind  string              `json:"kind"`
				Rules []rbacv1.PolicyRule `json:"rules"`
			}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				return nil, fmt.Errorf("harness: %s: %w", f, err)
			}
			if obj.Kind != "Role" && obj.Kind != "ClusterRole" {
				continue
			}
			for _, r := range obj.Rules {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						for _, v := range r.Verbs {
							out[Permission{Group: g, Resource: res, Verb: v}] = true
						}
					}
				}
			}
		}
	}
	return out, nil
}

// SortedPermissions lists the keys of m in a stable order.
func SortedPermissions[V any](m map[Permission]V) []Permission {
	out := make([]Permission, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Permission) int {
		return strings.Compare(a.Group+" "+a.Resource+" "+a.Verb, b.Group+" "+b.Resource+" "+b.Verb)
	})
	return out
}
