package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fleetctl"
	"github.com/wasmbed/wasmbed/internal/gateway"
)

// requestTimeout bounds each request to the API server, so that a cluster
// that does not answer gives an error rather than a hang.
const requestTimeout = 30 * time.Second

// Output formats of -o.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// clusterOptions are the flags of the commands that work on a cluster: which
// one, which namespace, and how to print.
type clusterOptions struct {
	kubeconfig      string
	dataDir         string
	namespace       string
	systemNamespace string
	output          string
}

// addClusterFlags adds the cluster flags to cmd; withOutput adds -o.
func addClusterFlags(cmd *cobra.Command, withOutput bool) *clusterOptions {
	o := &clusterOptions{}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: $KUBECONFIG, else the kubeconfig of --data-dir)")
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "data directory of `wasmbed up`, whose kubeconfig is the default (env "+dataDirEnv+")")
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of the applications and devices")
	f.StringVar(&o.systemNamespace, "system-namespace", wasmbedv1.DefaultSystemNamespace, "namespace of the platform's own state")
	if withOutput {
		f.StringVarP(&o.output, "output", "o", outputTable, "output format: table, json or yaml")
	}
	return o
}

// check validates the flags, before anything is asked of the cluster.
func (o *clusterOptions) check() error {
	switch o.output {
	case "", outputTable, outputJSON, outputYAML:
	default:
		return usagef("--output %q: want table, json or yaml", o.output)
	}
	for flag, ns := range map[string]string{"--namespace": o.namespace, "--system-namespace": o.systemNamespace} {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return usagef("%s %q: %s", flag, ns, strings.Join(errs, "; "))
		}
	}
	return nil
}

// loadingRules finds the kubeconfig: --kubeconfig, else $KUBECONFIG, else
// the data directory's.
func (o *clusterOptions) loadingRules() (*clientcmd.ClientConfigLoadingRules, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	switch {
	case o.kubeconfig != "":
		rules.ExplicitPath = o.kubeconfig
	case os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
	default:
		path := filepath.Join(o.dataDir, "kubeconfig")
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no kubeconfig at %s: start the platform with `wasmbed up`, or choose a cluster with --kubeconfig or KUBECONFIG", path)
		}
		rules.ExplicitPath = path
	}
	return rules, nil
}

// clientConfig returns the kubeconfig's current context.
func (o *clusterOptions) clientConfig() (clientcmd.ClientConfig, error) {
	rules, err := o.loadingRules()
	if err != nil {
		return nil, err
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}), nil
}

// restConfig returns the REST configuration of the chosen cluster.
func (o *clusterOptions) restConfig() (*rest.Config, error) {
	cc, err := o.clientConfig()
	if err != nil {
		return nil, err
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.Timeout = requestTimeout
	return cfg, nil
}

// client returns a client of the chosen cluster that knows the platform's
// resources.
func (o *clusterOptions) client() (client.Client, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	cfg, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	s, err := gateway.NewScheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Host, err)
	}
	return c, nil
}

// userName names the kubeconfig user, recorded as who opened a pairing
// window or deployed an application.
func (o *clusterOptions) userName() string {
	cc, err := o.clientConfig()
	if err != nil {
		return ""
	}
	raw, err := cc.RawConfig()
	if err != nil {
		return ""
	}
	if ctx, ok := raw.Contexts[raw.CurrentContext]; ok {
		return ctx.AuthInfo
	}
	return ""
}

// print writes v as JSON or YAML when -o asks for it, else calls table with
// a tabwriter.
func (o *clusterOptions) print(w io.Writer, v any, table func(w io.Writer)) error {
	switch o.output {
	case outputJSON:
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("encode json: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case outputYAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		_, err = w.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// scripted reports whether the output is for a program: progress then goes
// to stderr.
func (o *clusterOptions) scripted() bool { return o.output == outputJSON || o.output == outputYAML }

// usageError is a command line the command cannot run: wrong arguments,
// flags or values. It exits with code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// isUsageError reports whether err is a usage error: ours, an invalid
// request (fleetctl.InvalidError), or cobra's for unknown commands and
// missing flags.
func isUsageError(err error) bool {
	var ue *usageError
	var ie *fleetctl.InvalidError
	if errors.As(err, &ue) || errors.As(err, &ie) {
		return true
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command ") || strings.HasPrefix(msg, "required flag(s) ") ||
		strings.HasPrefix(msg, "unknown flag") || strings.HasPrefix(msg, "unknown shorthand flag")
}

// nameArg accepts exactly one argument, a Kubernetes object name.
func nameArg(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("want one argument, the %s name; got %d", what, len(args))
		}
		if errs := validation.IsDNS1123Subdomain(args[0]); len(errs) > 0 {
			return usagef("%s name %q: %s", what, args[0], strings.Join(errs, "; "))
		}
		return nil
	}
}

// groupRun is the RunE of a command that only groups subcommands: help
// without arguments, a usage error for an unknown subcommand.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return cmd.Help()
}

// noArgs refuses arguments as a usage error.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q", args)
	}
	return nil
}

// clusterError turns the Kubernetes errors a user meets into one line.
func clusterError(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s not found", what)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: forbidden: the kubeconfig's user may not do this (%w)", what, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: the cluster refused the kubeconfig's credentials", what)
	case apierrors.IsConflict(err):
		return fmt.Errorf("%s was changed concurrently; retry", what)
	}
	return err
}

// age formats the time since t as kubectl does ("5m", "3h"), "-" for none.
func age(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(now.Sub(*t))
}

// orDash is s, or "-" when empty, for table cells.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
