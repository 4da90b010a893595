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
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	Annotations map[string]string `json:"annotations"`
}

// Request is one completed resource request of an audit log.
type Request struct {
	Permission
	// Namespace and Name of the object ("" for lists and cluster-wide requests).
	Namespace, Name string
	// As is the user the request was made as (impersonation), "" when none.
	As string
	// Forbidden: the authorizer refused it, or, before it ran, the requester's
	// impersonation was refused (a 403 with no authorization decision; the audit log then
	// shows no impersonated user).
	Forbidden bool
}

// Requests reads an audit log (JSON lines) and returns the resource requests user made,
// from the ResponseComplete stage of each.
func Requests(auditLog, user string) ([]Request, error) {
	b, err := os.ReadFile(auditLog)
	if err != nil {
		return nil, err
	}
	var out []Request
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("harness: audit log line %q: %w", sc.Text(), err)
		}
		if ev.User.Username != user || ev.ObjectRef == nil || ev.Stage != "ResponseComplete" {
			continue
		}
		r := Request{Permission: Permission{Group: ev.ObjectRef.APIGroup, Resource: ev.ObjectRef.Resource, Verb: ev.Verb},
			Namespace: ev.ObjectRef.Namespace, Name: ev.ObjectRef.Name}
		if ev.ObjectRef.Subresource != "" {
			r.Resource += "/" + ev.ObjectRef.Subresource
		}
		if ev.ImpersonatedUser != nil {
			r.As = ev.ImpersonatedUser.Username
		}
		decision := ev.Annotations["authorization.k8s.io/decision"]
		r.Forbidden = decision == "forbid" || (decision == "" && ev.ResponseStatus != nil && ev.ResponseStatus.Code == 403)
		out = append(out, r)
	}
	return out, sc.Err()
}

// impersonateServiceAccounts is the permission a request made as another user (a
// ServiceAccount) uses of the requester's own.
var impersonateServiceAccounts = Permission{Group: "", Resource: "serviceaccounts", Verb: "impersonate"}

// UsedPermissions returns the permissions user exercised, from its requests in the audit
// log. A request user made as a ServiceAccount (impersonation) used user's "impersonate
// serviceaccounts", not the permission the request itself needed: that was the
// ServiceAccount's (see ImpersonatedPermissions).
func UsedPermissions(auditLog, user string) (map[Permission]Use, error) {
	reqs, err := Requests(auditLog, user)
	out := map[Permission]Use{}
	for _, r := range reqs {
		p := r.Permission
		if r.As != "" {
			p = impersonateServiceAccounts
		}
		out[p] = out[p].add(r.Forbidden)
	}
	return out, err
}

// ImpersonatedPermissions returns, per user user acted as, the permissions those requests
// needed, and whether the authorizer granted them to that user.
func ImpersonatedPermissions(auditLog, user string) (map[string]map[Permission]Use, error) {
	reqs, err := Requests(auditLog, user)
	out := map[string]map[Permission]Use{}
	for _, r := range reqs {
		if r.As == "" {
			continue
		}
		if out[r.As] == nil {
			out[r.As] = map[Permission]Use{}
		}
		out[r.As][r.Permission] = out[r.As][r.Permission].add(r.Forbidden)
	}
	return out, err
}

func (u Use) add(forbidden bool) Use {
	if forbidden {
		u.Forbidden++
	} else {
		u.Allowed++
	}
	return u
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
