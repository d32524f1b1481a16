package cli

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/pki"
)

// gatewayFlags are the flags of `wasmbed gateway` that need parsing before
// they become gateway.Options.
type gatewayFlags struct {
	kubeconfig       string
	tlsCert, tlsKey  string
	dnsNames         []string
	ips              []net.IP
	maxHandshakes    int
	maxEnrollments   int
	goroutineSession bool
}

func newGatewayCommand() *cobra.Command {
	opts := gateway.Options{}
	flags := &gatewayFlags{}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run a gateway replica against a cluster",
		Long: `Gateway runs one gateway replica: it holds the devices' mutually authenticated
TLS sessions, enrolls new devices while the pairing window is open, delivers
applications, writes what devices report into Kubernetes, and serves the HTTP
API with /healthz, /readyz and /metrics.

It reaches the cluster through --kubeconfig, else $KUBECONFIG, else the
in-cluster service account, else the data directory of ` + "`wasmbed up`" + `. It reads
the trust bundle and the platform signing key from the system namespace and
has the controller sign a short-lived serving certificate for --dns-name and
--ip, unless --tls-cert and --tls-key name one.

Every flag can also be set in the environment: WASMBED_ and the flag's name in
capitals with dashes as underscores (--session-addr is WASMBED_SESSION_ADDR).
A flag on the command line wins.`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return flagsFromEnv(cmd.Flags(), "WASMBED_")
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := restConfig(flags.kubeconfig)
			if err != nil {
				return err
			}
			opts.Config = cfg
			if (flags.tlsCert == "") != (flags.tlsKey == "") {
				return fmt.Errorf("--tls-cert and --tls-key go together")
			}
			if flags.tlsCert != "" {
				cert, err := pki.LoadTLSCertificate(flags.tlsCert, flags.tlsKey)
				if err != nil {
					return err
				}
				opts.Trust.Certificate = cert
			}
			opts.ServingDNSNames, opts.ServingIPs = flags.dnsNames, flags.ips
			opts.Limits.MaxHandshakes = flags.maxHandshakes
			opts.Limits.MaxEnrollments = flags.maxEnrollments
			opts.Limits.GoroutinePerSession = flags.goroutineSession
			if opts.Name == "" {
				return fmt.Errorf("--name is required (or $POD_NAME, or a host name)")
			}
			opts.Logger = slog.Default()
			ctrllog.SetLogger(logr.FromSlogHandler(slog.Default().Handler()))
			g, err := gateway.New(opts)
			if err != nil {
				return err
			}
			return g.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&flags.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default $KUBECONFIG, in-cluster, or the data directory's)")
	f.StringVar(&opts.Name, "name", defaultReplicaName(), "replica name: its Lease and the status.gateway of its devices (default $POD_NAME, else the host name)")
	f.StringVar(&opts.SystemNamespace, "system-namespace", wasmbedv1.DefaultSystemNamespace, "namespace of the trust bundle, the pairing window, Leases and ticket keys")
	f.StringVar(&opts.DeviceNamespace, "device-namespace", "default", "namespace where enrollment creates Devices")
	f.StringVar(&opts.SessionAddr, "session-addr", ":4423", "address of the device session listener")
	f.StringVar(&opts.EnrollAddr, "enroll-addr", ":4424", "address of the enrollment listener")
	f.StringVar(&opts.HTTPAddr, "http-addr", ":8080", "address of the HTTP API, health and metrics listener")
	f.StringSliceVar(&flags.dnsNames, "dns-name", nil, "DNS name devices dial, for the serving certificate (repeatable)")
	f.IPSliceVar(&flags.ips, "ip", nil, "IP address devices dial, for the serving certificate (repeatable)")
	f.StringVar(&flags.tlsCert, "tls-cert", "", "PEM serving certificate chain from the gateway CA, instead of one requested from the controller")
	f.StringVar(&flags.tlsKey, "tls-key", "", "PEM key of --tls-cert")
	f.DurationVar(&opts.HeartbeatInterval, "heartbeat-interval", 0, "heartbeat interval announced to devices (default 30s)")
	f.DurationVar(&opts.UnreachableAfter, "unreachable-after", 0, "missed-heartbeat deadline before a device is Unreachable (default 3 heartbeat intervals)")
	f.DurationVar(&opts.LastSeenPeriod, "last-seen-period", 0, "how often a connected device's status.lastSeen is written (default 1h)")
	f.DurationVar(&opts.LeaseDuration, "lease-duration", 0, "duration of the replica's Lease (default 15s)")
	f.DurationVar(&opts.TicketKeyRotation, "ticket-key-rotation", 0, "age at which the shared session-ticket key is replaced (default 24h)")
	f.IntVar(&opts.MaxConcurrentDeliveries, "max-concurrent-deliveries", 0, "devices delivered to at once (default 128)")
	f.IntVar(&flags.maxHandshakes, "max-handshakes", 0, "TLS handshakes doing cryptography at once (default 4 per CPU)")
	f.IntVar(&flags.maxEnrollments, "max-enrollments", 0, "enrollments answered at once; more wait up to 10s, then are told to retry later (default 256)")
	f.BoolVar(&flags.goroutineSession, "goroutine-per-session", false, "serve each session with its own goroutine instead of parking idle sessions")
	f.Float32Var(&opts.QPS, "kube-api-qps", 0, "client-side limit of requests per second to the API server (default 200)")
	f.IntVar(&opts.Burst, "kube-api-burst", 0, "client-side burst of requests to the API server (default 400)")
	f.StringSliceVar(&opts.APIAudiences, "api-audience", nil, "audiences HTTP API bearer tokens must be issued for (default the API server's)")
	return cmd
}

// defaultReplicaName is $POD_NAME (a StatefulSet pod's name), else the host
// name.
func defaultReplicaName() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	if n, err := os.Hostname(); err == nil {
		return strings.ToLower(n)
	}
	return ""
}

// flagsFromEnv sets every flag not given on the command line from the
// environment variable prefix + its name in capitals, dashes as
// underscores.
func flagsFromEnv(fs *pflag.FlagSet, prefix string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s=%q: %w", name, v, serr)
		}
	})
	return err
}
