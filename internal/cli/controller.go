package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/certsign"
	"github.com/wasmbed/wasmbed/internal/controller"
	"github.com/wasmbed/wasmbed/internal/modcheck"
)

// controllerFlags are the flags of `wasmbed controller` that need parsing
// before they become controller.Options.
type controllerFlags struct {
	kubeconfig      string
	admissionMemory string
}

func newControllerCommand() *cobra.Command {
	opts := controller.Options{}
	flags := &controllerFlags{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the controller against a cluster",
		Long: `Controller runs the Wasmbed controller: it rolls Applications out to Devices as
signed per-device artifacts, keeps Device status true when gateways or devices
go away, and signs the certificates gateways request for devices and for
themselves. On first start it creates the platform signing key and the issuer
key in the system namespace and publishes their public halves in the
wasmbed-issuer ConfigMap.

It reaches the cluster through --kubeconfig, else $KUBECONFIG, else the
in-cluster service account, else the kubeconfig of the data directory of
` + "`wasmbed up`" + `. Run several replicas with --leader-elect: one reconciles, the
others wait on the Lease.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := restConfig(flags.kubeconfig)
			if err != nil {
				return err
			}
			opts.RESTConfig = cfg
			if flags.admissionMemory != "" {
				q, err := resource.ParseQuantity(flags.admissionMemory)
				if err != nil || q.Sign() <= 0 {
					return fmt.Errorf("--admission-memory %q: want a positive quantity such as 256Mi", flags.admissionMemory)
				}
				opts.Admission.MemoryBytes = uint64(q.Value()) //nolint:gosec // q.Sign() > 0 is checked above
			}
			if err := checkDurations(map[string]time.Duration{
				"--unreachable-after": opts.UnreachableAfter, "--status-interval": opts.StatusInterval,
				"--artifact-lifetime": opts.ArtifactLifetime, "--csr-grace-period": opts.CSRGracePeriod,
				"--device-cert-lifetime": opts.DeviceCertLifetime, "--gateway-cert-lifetime": opts.GatewayCertLifetime,
				"--admission-timeout": opts.Admission.Timeout,
			}); err != nil {
				return err
			}
			ctrllog.SetLogger(logr.FromSlogHandler(slog.Default().Handler()))
			return controller.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&flags.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG, in-cluster, or the data directory's)")
	f.StringVar(&opts.SystemNamespace, "system-namespace", wasmbedv1.DefaultSystemNamespace, "namespace of the keys, CAs, gateway Leases and pairing window")
	f.StringSliceVar(&opts.Namespaces, "watch-namespace", nil, "namespaces of Devices and Applications to reconcile (default all)")
	f.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	f.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz (0 disables them)")
	f.BoolVar(&opts.LeaderElection, "leader-elect", true, "reconcile only in the replica holding the leader-election Lease")
	f.StringVar(&opts.LeaderElectionID, "leader-election-id", controller.DefaultLeaderElectionID, "name of the leader-election Lease")
	f.Float32Var(&opts.QPS, "kube-api-qps", controller.DefaultQPS, "client-side limit of requests per second to the API server")
	f.IntVar(&opts.Burst, "kube-api-burst", controller.DefaultBurst, "client-side burst of requests to the API server")
	f.StringSliceVar(&opts.GatewayUsers, "gateway-user", []string{controller.DefaultGatewayUser}, "identity of the gateways, whose certificate requests are signed (repeatable)")
	f.StringSliceVar(&opts.GatewayGroups, "gateway-group", nil, "group of the gateway identities (repeatable)")
	f.DurationVar(&opts.UnreachableAfter, "unreachable-after", controller.DefaultUnreachableAfter, "how long a connected device may go without a lastSeen refresh")
	f.DurationVar(&opts.StatusInterval, "status-interval", controller.DefaultStatusInterval, "shortest time between two count-only status writes of one Application")
	f.DurationVar(&opts.ArtifactLifetime, "artifact-lifetime", controller.DefaultArtifactLifetime, "how long an issued artifact stays installable")
	f.DurationVar(&opts.CSRGracePeriod, "csr-grace-period", controller.DefaultCSRGracePeriod, "how long a decided certificate request stays before it is deleted")
	f.DurationVar(&opts.DeviceCertLifetime, "device-cert-lifetime", 24*time.Hour, "lifetime of device certificates")
	f.DurationVar(&opts.GatewayCertLifetime, "gateway-cert-lifetime", certsign.DefaultGatewayLifetime, "lifetime of gateway server certificates")
	f.StringSliceVar(&opts.GatewayDNSNames, "gateway-dns-name", nil, "DNS name gateway certificates may carry (repeatable; none: gateway requests are denied)")
	f.IPSliceVar(&opts.GatewayIPs, "gateway-ip", nil, "IP address gateway certificates may carry (repeatable)")
	f.DurationVar(&opts.Admission.Timeout, "admission-timeout", modcheck.DefaultTimeout, "time budget of checking one module")
	f.StringVar(&flags.admissionMemory, "admission-memory", "256Mi", "memory budget of checking one module")
	f.IntVar(&opts.ApplicationWorkers, "application-workers", 4, "Applications reconciled at once")
	return cmd
}

func checkDurations(ds map[string]time.Duration) error {
	var errs []error
	for flag, d := range ds {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: want a positive duration", flag, d))
		}
	}
	return errors.Join(errs...)
}

// restConfig finds the cluster: the kubeconfig flag, $KUBECONFIG, the
// in-cluster service account, then the embedded control plane's kubeconfig.
func restConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	switch {
	case kubeconfig != "":
		rules = &clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}
	case os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
	default:
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
		kubeconfig = filepath.Join(defaultDataDir(), "kubeconfig")
		rules = &clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}
