// Package history serves the archive back in Kubernetes' own terms: an aggregated API,
// history.funnel.leasing.dev/v1alpha1 archivedevents, read-only and namespaced, so that
// `kubectl get archivedevents -n team -l funnel.leasing.dev/lease-transaction-id=74824`
// works under the cluster's RBAC. The kube-apiserver authenticates the user and proxies
// the request here (APIService); this server trusts its front-proxy client certificate
// and asks the API server (SubjectAccessReview) whether the user may list or get
// archivedevents in that namespace. Selectors run as SQL on the archive's indexes.
package history

import (
	"context"
	"fmt"
	"net"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/component-base/compatibility"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"

	historyv1 "github.com/funnel-operator/funnel-operator/api/history/v1alpha1"
)

// kubeLibraries is the version of the k8s.io libraries in go.mod.
const kubeLibraries = "1.37.2"

// Options configure the history API server.
type Options struct {
	// Addr is the HTTPS address to listen on, e.g. ":8443". Ignored with Listener.
	Addr string
	// Listener, when set, is used instead of Addr (tests).
	Listener net.Listener
	// CertDir holds the serving certificate tls.crt and key tls.key (e.g. a Secret made
	// by cert-manager); empty: a self-signed certificate made at start, for DNSNames.
	CertDir string
	// DNSNames the self-signed certificate is for, e.g. funnel-history.funnel-system.svc.
	DNSNames []string
	// Kubeconfig is the file to reach the API server with, to check users' permissions
	// and read the front-proxy CA; empty: the in-cluster configuration.
	Kubeconfig string
}

// Server is the history API server, run by the manager on every replica.
type Server struct {
	server *genericapiserver.GenericAPIServer
	cert   []byte
}

// NewServer builds the server; it reads the API server's front-proxy configuration
// (kube-system/extension-apiserver-authentication) once now, and follows it afterwards.
func NewServer(opts Options, store Archive) (*Server, error) {
	scheme := runtime.NewScheme()
	if err := historyv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	// The API machinery wants a hub version to convert through: the same Go types, so
	// there is nothing to convert.
	scheme.AddKnownTypes(schema.GroupVersion{Group: historyv1.GroupName, Version: runtime.APIVersionInternal},
		&historyv1.ArchivedEvent{}, &historyv1.ArchivedEventList{})
	if err := scheme.AddFieldLabelConversionFunc(historyv1.SchemeGroupVersion.WithKind("ArchivedEvent"), fieldLabel); err != nil {
		return nil, err
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	scheme.AddUnversionedTypes(schema.GroupVersion{Group: "", Version: "v1"},
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
	codecs := serializer.NewCodecFactory(scheme)

	serving := genericoptions.NewSecureServingOptions().WithLoopback()
	serving.Listener = opts.Listener
	if opts.Listener == nil {
		host, port, err := net.SplitHostPort(opts.Addr)
		if err != nil {
			return nil, fmt.Errorf("history API address %q: %w", opts.Addr, err)
		}
		if host != "" {
			serving.BindAddress = net.ParseIP(host)
		}
		if _, err := fmt.Sscan(port, &serving.BindPort); err != nil {
			return nil, fmt.Errorf("history API address %q: %w", opts.Addr, err)
		}
	}
	if opts.CertDir != "" {
		serving.ServerCert.CertDirectory, serving.ServerCert.PairName = "", ""
		serving.ServerCert.CertKey.CertFile = opts.CertDir + "/tls.crt"
		serving.ServerCert.CertKey.KeyFile = opts.CertDir + "/tls.key"
	} else {
		serving.ServerCert.CertDirectory = ""
		if err := serving.MaybeDefaultWithSelfSignedCerts("localhost", opts.DNSNames, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
			return nil, fmt.Errorf("making the history API's serving certificate: %w", err)
		}
	}
	authn := genericoptions.NewDelegatingAuthenticationOptions()
	authn.RemoteKubeConfigFile = opts.Kubeconfig
	authz := genericoptions.NewDelegatingAuthorizationOptions()
	authz.RemoteKubeConfigFile = opts.Kubeconfig

	cfg := genericapiserver.NewRecommendedConfig(codecs)
	// The API machinery's feature versions: those of the Kubernetes libraries built in.
	cfg.EffectiveVersion = compatibility.NewEffectiveVersionFromString(kubeLibraries, "", "")
	if err := serving.ApplyTo(&cfg.SecureServing, &cfg.LoopbackClientConfig); err != nil {
		return nil, fmt.Errorf("history API serving: %w", err)
	}
	if err := authn.ApplyTo(&cfg.Authentication, cfg.SecureServing, nil); err != nil {
		return nil, fmt.Errorf("history API authentication (does the API server have the aggregation layer on?): %w", err)
	}
	if err := authz.ApplyTo(&cfg.Authorization); err != nil {
		return nil, fmt.Errorf("history API authorization: %w", err)
	}
	// The API machinery builds a model of the resource (for server-side apply, which a
	// read-only API never uses); publishing OpenAPI documents would need models of every
	// Kubernetes type on every route: skipped, so kubectl explain does not know the kind.
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openAPIDefinitions, openapinamer.NewDefinitionNamer(scheme))
	cfg.SkipOpenAPIInstallation = true

	server, err := cfg.Complete().New("funnel-history", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("creating the history API server: %w", err)
	}
	group := genericapiserver.NewDefaultAPIGroupInfo(historyv1.GroupName, scheme, metav1.ParameterCodec, codecs)
	group.VersionedResourcesStorageMap[historyv1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"archivedevents": &storage{archive: store},
	}
	if err := server.InstallAPIGroup(&group); err != nil {
		return nil, fmt.Errorf("installing the history API: %w", err)
	}
	s := &Server{server: server}
	if gen := serving.ServerCert.GeneratedCert; gen != nil {
		s.cert, _ = gen.CurrentCertKeyContent()
	}
	return s, nil
}

// ServingCertificate is the self-signed certificate (PEM, with its CA) when the server
// made one: the caBundle of the APIService. Nil with Options.CertDir.
func (s *Server) ServingCertificate() []byte { return s.cert }

// NeedLeaderElection: every replica serves the history API.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	return s.server.PrepareRun().RunWithContext(ctx)
}

// openAPIDefinitions is the model of archived events, deliberately loose (the fields are
// documented in the README).
func openAPIDefinitions(common.ReferenceCallback) map[string]common.OpenAPIDefinition {
	free := spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"object"}},
		VendorExtensible: spec.VendorExtensible{Extensions: spec.Extensions{"x-kubernetes-preserve-unknown-fields": true}}}
	str := spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"string"}}}
	pkg := "github.com/funnel-operator/funnel-operator/api/history/v1alpha1."
	return map[string]common.OpenAPIDefinition{
		pkg + "ArchivedEvent": {Schema: spec.Schema{SchemaProps: spec.SchemaProps{
			Description: "A FunnelEvent as the history archive holds it.",
			Type:        []string{"object"},
			Properties:  map[string]spec.Schema{"apiVersion": str, "kind": str, "metadata": free, "spec": free, "status": free},
		}}},
		pkg + "ArchivedEventList": {Schema: spec.Schema{SchemaProps: spec.SchemaProps{
			Description: "A page of archived events, oldest received first.",
			Type:        []string{"object"},
			Properties: map[string]spec.Schema{"apiVersion": str, "kind": str, "metadata": free,
				"items": {SchemaProps: spec.SchemaProps{Type: []string{"array"}, Items: &spec.SchemaOrArray{Schema: &free}}}},
		}}},
	}
}
