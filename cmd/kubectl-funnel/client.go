package main

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	historyv1 "github.com/funnel-operator/funnel-operator/api/history/v1alpha1"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// kubeOptions is what every subcommand needs to reach the cluster: the
// standard kubeconfig flags (--kubeconfig, --context, -n, ...), resolved
// lazily so that commands and flags that need no cluster never touch it.
type kubeOptions struct {
	flags *genericclioptions.ConfigFlags
	// newClient builds the client; tests replace it with a fake.
	newClient func() (client.WithWatch, error)
}

// newKubeOptions returns kubeOptions over the standard kubeconfig flags.
// Their --token (an API-server bearer token) is left out because send's
// --token is the receiver's token; the kubeconfig still carries API
// credentials, tokens included.
func newKubeOptions() *kubeOptions {
	flags := genericclioptions.NewConfigFlags(true)
	flags.BearerToken = nil
	k := &kubeOptions{flags: flags}
	k.newClient = k.buildClient
	return k
}

// Namespace is -n/--namespace, else the kubeconfig context's namespace,
// else "default", as with kubectl.
func (k *kubeOptions) Namespace() (string, error) {
	ns, _, err := k.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
	}
	return ns, nil
}

// Client returns a controller-runtime client, able to watch, that knows
// client-go's kinds and funnel.leasing.dev/v1alpha1.
func (k *kubeOptions) Client() (client.WithWatch, error) { return k.newClient() }

func (k *kubeOptions) buildClient() (client.WithWatch, error) {
	cfg, err := k.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: newScheme()})
	if err != nil {
		return nil, fmt.Errorf("creating a client for %s: %w", cfg.Host, err)
	}
	return c, nil
}

// newScheme holds client-go's kinds (Secrets) and ours.
func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(funnelv1.AddToScheme(s))
	utilruntime.Must(historyv1.AddToScheme(s))
	return s
}
