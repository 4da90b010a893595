// Package metawrite is a controller-runtime client whose creates and patches take only
// the object's metadata back from the API server.
//
// A create or a patch answers with the whole object by default: the API server encodes
// it as JSON and the client decodes it, data and status included, for callers that
// mostly ignore it. The receiver only needs to know that the event was stored, and the
// event controllers only the new resourceVersion. Asking for PartialObjectMetadata
// (protobuf) instead costs both sides a fraction of that; make bench measures it.
package metawrite

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// accept asks for the object's metadata only, in protobuf, with JSON as the fallback
// (an API server that cannot transform answers with the whole object, which is decoded
// as metadata all the same).
const accept = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1," +
	"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

// Client is c with Create and Status().Patch answered with metadata. After either, obj
// has the server's metadata (resourceVersion, uid, generation, managedFields, ...) but
// its spec and status are what was sent: server-side defaults are not read back.
//
// Both skip server-side field validation unless the caller asks for it with
// client.FieldValidation: what goes through here is built from typed structs, so the
// API server's default check for unknown and duplicate fields (a strict decode of the
// whole object) can find nothing and only costs time.
type Client struct {
	client.Client

	rest     rest.Interface
	json     runtime.Encoder
	params   runtime.ParameterCodec
	mu       sync.Mutex
	prefixes map[schema.GroupVersionKind]prefix
}

// prefix is where objects of one kind live: /apis/group/version and the resource.
type prefix struct {
	base       []string
	resource   string
	namespaced bool
}

var metaV1 = schema.GroupVersion{Version: "v1"}

// New wraps c (which still does every read and every other write) for the API server of
// cfg. The writes share cfg's rate limits and transport settings.
func New(cfg *rest.Config, c client.Client) (*Client, error) {
	rc, err := rest.UnversionedRESTClientFor(metadata.ConfigFor(cfg))
	if err != nil {
		return nil, fmt.Errorf("metawrite: creating the REST client: %w", err)
	}
	params := runtime.NewScheme()
	metav1.AddToGroupVersion(params, metaV1)
	return &Client{
		Client:   c,
		rest:     rc,
		json:     json.NewSerializerWithOptions(json.DefaultMetaFactory, c.Scheme(), c.Scheme(), json.SerializerOptions{}),
		params:   runtime.NewParameterCodec(params),
		prefixes: map[schema.GroupVersionKind]prefix{},
	}, nil
}

// Create creates obj and reads the server's metadata back into it.
func (c *Client) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	gvk, p, err := c.prefixOf(obj)
	if err != nil {
		return err
	}
	body, err := runtime.Encode(runtime.WithVersionEncoder{Version: gvk.GroupVersion(), Encoder: c.json, ObjectTyper: c.Scheme()}, obj)
	if err != nil {
		return fmt.Errorf("metawrite: encoding %s: %w", gvk.Kind, err)
	}
	o := &client.CreateOptions{}
	o.ApplyOptions(opts)
	if o.FieldValidation == "" {
		o.FieldValidation = metav1.FieldValidationIgnore
	}
	req := c.rest.Post().AbsPath(p.path(obj.GetNamespace())...).
		SetHeader("Content-Type", runtime.ContentTypeJSON).
		SpecificallyVersionedParams(o.AsCreateOptions(), c.params, metaV1).
		Body(body)
	return c.do(ctx, req, obj)
}

// Status returns a writer whose Patch is answered with metadata; Create and Update of
// the subresource are c's own.
func (c *Client) Status() client.SubResourceWriter {
	return statusWriter{SubResourceWriter: c.Client.Status(), c: c}
}

type statusWriter struct {
	client.SubResourceWriter
	c *Client
}

// Patch patches obj's status subresource and reads the server's metadata back into it.
func (w statusWriter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	_, p, err := w.c.prefixOf(obj)
	if err != nil {
		return err
	}
	data, err := patch.Data(obj)
	if err != nil {
		return fmt.Errorf("metawrite: computing the patch: %w", err)
	}
	o := &client.SubResourcePatchOptions{}
	o.ApplyOptions(opts)
	if o.FieldValidation == "" {
		o.FieldValidation = metav1.FieldValidationIgnore
	}
	req := w.c.rest.Patch(patch.Type()).AbsPath(append(p.path(obj.GetNamespace()), obj.GetName(), "status")...).
		SpecificallyVersionedParams(o.AsPatchOptions(), w.c.params, metaV1).
		Body(data)
	return w.c.do(ctx, req, obj)
}

// do sends req asking for metadata and copies what the server set into obj.
func (c *Client) do(ctx context.Context, req *rest.Request, obj client.Object) error {
	res := req.SetHeader("Accept", accept).Do(ctx)
	if err := res.Error(); err != nil {
		return err
	}
	raw, err := res.Get()
	if err != nil {
		return fmt.Errorf("metawrite: decoding the answer: %w", err)
	}
	m, ok := raw.(*metav1.PartialObjectMetadata)
	if !ok {
		return fmt.Errorf("metawrite: the API server answered with %T, not metadata", raw)
	}
	copyMeta(obj, &m.ObjectMeta)
	return nil
}

// copyMeta sets every field of obj's metadata to the server's.
func copyMeta(obj client.Object, m *metav1.ObjectMeta) {
	obj.SetName(m.Name)
	obj.SetNamespace(m.Namespace)
	obj.SetUID(m.UID)
	obj.SetResourceVersion(m.ResourceVersion)
	obj.SetGeneration(m.Generation)
	obj.SetCreationTimestamp(m.CreationTimestamp)
	obj.SetDeletionTimestamp(m.DeletionTimestamp)
	obj.SetLabels(m.Labels)
	obj.SetAnnotations(m.Annotations)
	obj.SetFinalizers(m.Finalizers)
	obj.SetOwnerReferences(m.OwnerReferences)
	obj.SetManagedFields(m.ManagedFields)
}

// prefixOf finds obj's kind and where objects of it live, once per kind: the REST
// mapping is a lookup under a lock that showed in profiles of the receiver.
func (c *Client) prefixOf(obj client.Object) (schema.GroupVersionKind, prefix, error) {
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return gvk, prefix{}, fmt.Errorf("metawrite: %w", err)
	}
	c.mu.Lock()
	p, ok := c.prefixes[gvk]
	c.mu.Unlock()
	if ok {
		return gvk, p, nil
	}
	m, err := c.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return gvk, prefix{}, fmt.Errorf("metawrite: mapping %s: %w", gvk, err)
	}
	base := []string{"/apis", gvk.Group, gvk.Version}
	if gvk.Group == "" {
		base = []string{"/api", gvk.Version}
	}
	p = prefix{base: base, resource: m.Resource.Resource, namespaced: m.Scope.Name() == meta.RESTScopeNameNamespace}
	c.mu.Lock()
	c.prefixes[gvk] = p
	c.mu.Unlock()
	return gvk, p, nil
}

// path is the collection's path in namespace ns.
func (p prefix) path(ns string) []string {
	out := append([]string{}, p.base...)
	if p.namespaced {
		out = append(out, "namespaces", ns)
	}
	return append(out, p.resource)
}
