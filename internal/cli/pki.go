package cli

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmbed/wasmbed/internal/pki"
)

func newPKICommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Manage the certificate authority, gateway and device certificates",
		Long: `Pki manages Wasmbed's certificate chain: a root CA and two intermediates below
it, the gateway CA, which issues gateway server certificates, and the device
CA, which issues device client certificates. Each intermediate can issue only
its own kind. See docs/pki.md for the trust model and the CA directory layout.`,
	}
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Issue a gateway or device certificate from a CA directory",
	}
	issue.AddCommand(newPKIIssueGatewayCommand(), newPKIIssueDeviceCommand())
	cmd.AddCommand(newPKIInitCommand(), issue, newPKIKeygenCommand(), newPKIInspectCommand())
	return cmd
}

// pkiInitOptions are the flags of `wasmbed pki init`.
type pkiInitOptions struct {
	dir                  string
	algorithm            string
	organization         string
	rootCN               string
	gatewayCACN          string
	deviceCACN           string
	rootLifetime         time.Duration
	intermediateLifetime time.Duration
	force                bool
}

func newPKIInitCommand() *cobra.Command {
	opts := &pkiInitOptions{}
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a root CA, a gateway CA and a device CA in DIR",
		Long: `Init creates a root CA and the two intermediates below it — the gateway CA,
which issues gateway server certificates, and the device CA, which issues
device client certificates — and writes root.crt, root.key, gateway-ca.crt,
gateway-ca.key, device-ca.crt and device-ca.key into DIR (keys 0600). Existing
files are never overwritten unless --force is given. Keep root.key offline
once the intermediates exist; gateways need the certificates only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPKIInit(cmd.OutOrStdout(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.dir, "dir", "", "CA directory to create (required)")
	f.StringVar(&opts.algorithm, "algorithm", string(pki.DefaultKeyAlgorithm), "CA key algorithm: ed25519 or ecdsa-p256")
	f.StringVar(&opts.organization, "org", pki.DefaultOrganization, "subject organization")
	f.StringVar(&opts.rootCN, "root-cn", pki.DefaultRootCommonName, "root CA common name")
	f.StringVar(&opts.gatewayCACN, "gateway-ca-cn", pki.DefaultGatewayCACommonName, "gateway CA common name")
	f.StringVar(&opts.deviceCACN, "device-ca-cn", pki.DefaultDeviceCACommonName, "device CA common name")
	f.DurationVar(&opts.rootLifetime, "root-lifetime", pki.DefaultRootLifetime, "root CA lifetime")
	f.DurationVar(&opts.intermediateLifetime, "intermediate-lifetime", pki.DefaultIntermediateLifetime, "gateway and device CA lifetime")
	f.BoolVar(&opts.force, "force", false, "overwrite existing files")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func runPKIInit(w io.Writer, opts *pkiInitOptions) error {
	alg, err := pki.ParseKeyAlgorithm(opts.algorithm)
	if err != nil {
		return fmt.Errorf("--algorithm: %w", err)
	}
	a, err := pki.NewAuthority(pki.AuthorityOptions{
		Organization:         opts.organization,
		RootCommonName:       opts.rootCN,
		GatewayCACommonName:  opts.gatewayCACN,
		DeviceCACommonName:   opts.deviceCACN,
		Algorithm:            alg,
		RootLifetime:         opts.rootLifetime,
		IntermediateLifetime: opts.intermediateLifetime,
	})
	if err != nil {
		return err
	}
	if err := pki.SaveCA(opts.dir, a, opts.force); err != nil {
		return err
	}
	fp, err := pki.Fingerprint(a.Root.Cert.PublicKey)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "created CA in %s\nroot:       %s\ngateway CA: %s\ndevice CA:  %s\nroot key fingerprint: sha256:%s\n",
		opts.dir, a.Root.Cert.Subject, a.GatewayCA.Cert.Subject, a.DeviceCA.Cert.Subject, fp)
	return err
}

// pkiIssueGatewayOptions are the flags of `wasmbed pki issue gateway`.
type pkiIssueGatewayOptions struct {
	dir       string
	name      string
	dnsNames  []string
	ips       []string
	algorithm string
	csr       string
	lifetime  time.Duration
	out       string
	force     bool
}

func newPKIIssueGatewayCommand() *cobra.Command {
	opts := &pkiIssueGatewayOptions{}
	cmd := &cobra.Command{
		Use:   "gateway --dir DIR --name NAME (--dns NAME | --ip ADDR)... [--csr FILE] [--out PREFIX]",
		Short: "Issue a gateway server certificate",
		Long: `Gateway issues a server certificate from the gateway CA in DIR, valid for the
given DNS names and IP addresses, for a key it generates or, with --csr, for
the key of a gateway's certificate signing request, whose signature is
verified and which may ask for no name outside the ones given here. It writes
PREFIX.crt (certificate followed by the gateway CA) and, for a generated key,
PREFIX.key (PKCS#8, 0600); PREFIX defaults to NAME. Gateway certificates are
short-lived (72h by default): gateways ask again before they expire.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPKIIssueGateway(cmd.OutOrStdout(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.dir, "dir", "", "CA directory (required)")
	f.StringVar(&opts.name, "name", "", "gateway name, the certificate's common name (required)")
	f.StringSliceVar(&opts.dnsNames, "dns", nil, "DNS name devices dial (repeatable, comma-separated)")
	f.StringSliceVar(&opts.ips, "ip", nil, "IP address devices dial (repeatable, comma-separated)")
	f.StringVar(&opts.algorithm, "algorithm", string(pki.DefaultKeyAlgorithm), "key algorithm: ed25519 or ecdsa-p256")
	f.StringVar(&opts.csr, "csr", "", "gateway certificate signing request file (PEM or DER) instead of a new key")
	f.DurationVar(&opts.lifetime, "lifetime", pki.DefaultGatewayLifetime, "certificate lifetime")
	f.StringVar(&opts.out, "out", "", "output path prefix (default NAME)")
	f.BoolVar(&opts.force, "force", false, "overwrite existing files")
	_ = cmd.MarkFlagRequired("dir")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func runPKIIssueGateway(w io.Writer, opts *pkiIssueGatewayOptions) error {
	alg, err := pki.ParseKeyAlgorithm(opts.algorithm)
	if err != nil {
		return fmt.Errorf("--algorithm: %w", err)
	}
	var ips []net.IP
	for _, s := range opts.ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("--ip %q: not an IP address", s)
		}
		ips = append(ips, ip)
	}
	a, err := pki.LoadCA(opts.dir)
	if err != nil {
		return err
	}
	var c *pki.Certificate
	if opts.csr != "" {
		csr, err := pki.LoadCSR(opts.csr)
		if err != nil {
			return err
		}
		c, err = a.IssueGatewayFromCSR(csr, pki.GatewayRequest{Name: opts.name, DNSNames: opts.dnsNames, IPAddresses: ips, Lifetime: opts.lifetime})
		if err != nil {
			return err
		}
	} else if c, err = a.IssueGateway(pki.GatewayOptions{
		Name:        opts.name,
		DNSNames:    opts.dnsNames,
		IPAddresses: ips,
		Lifetime:    opts.lifetime,
		Algorithm:   alg,
	}); err != nil {
		return err
	}
	prefix := opts.out
	if prefix == "" {
		prefix = opts.name
	}
	return saveIssued(w, c, prefix, opts.force)
}

// pkiIssueDeviceOptions are the flags of `wasmbed pki issue device`.
type pkiIssueDeviceOptions struct {
	dir       string
	publicKey string
	csr       string
	deviceID  string
	lifetime  time.Duration
	out       string
	force     bool
}

func newPKIIssueDeviceCommand() *cobra.Command {
	opts := &pkiIssueDeviceOptions{}
	cmd := &cobra.Command{
		Use:   "device --dir DIR --device-id ID (--public-key FILE | --csr FILE)... [--out PREFIX]",
		Short: "Issue a device client certificate for a device's public key",
		Long: `Device issues a client certificate from the device CA in DIR for a device
key given as a public key file (PEM "PUBLIC KEY", or the base64url text stored
in a Device's spec.publicKey), as a certificate signing request, whose
signature is verified and which may name no other device, or both, in which
case the request must be for that key. The device id, always given here and
never taken from a request, becomes the common name and the URI SAN
urn:wasmbed:device:ID. Writes PREFIX.crt (certificate followed by the device
CA); PREFIX defaults to the device id.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPKIIssueDevice(cmd.OutOrStdout(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.dir, "dir", "", "CA directory (required)")
	f.StringVar(&opts.publicKey, "public-key", "", "device public key file")
	f.StringVar(&opts.csr, "csr", "", "device certificate signing request file (PEM or DER)")
	f.StringVar(&opts.deviceID, "device-id", "", "device id (required)")
	f.DurationVar(&opts.lifetime, "lifetime", pki.DefaultDeviceLifetime, "certificate lifetime")
	f.StringVar(&opts.out, "out", "", "output path prefix (default the device id)")
	f.BoolVar(&opts.force, "force", false, "overwrite existing files")
	_ = cmd.MarkFlagRequired("dir")
	_ = cmd.MarkFlagRequired("device-id")
	cmd.MarkFlagsOneRequired("public-key", "csr")
	return cmd
}

func runPKIIssueDevice(w io.Writer, opts *pkiIssueDeviceOptions) error {
	a, err := pki.LoadCA(opts.dir)
	if err != nil {
		return err
	}
	var pub crypto.PublicKey
	if opts.publicKey != "" {
		if pub, err = pki.LoadPublicKey(opts.publicKey); err != nil {
			return err
		}
	}
	var c *pki.Certificate
	if opts.csr != "" {
		csr, err := pki.LoadCSR(opts.csr)
		if err != nil {
			return err
		}
		if pub == nil {
			// The operator vouches for the request file: its key is the
			// one expected.
			pub = csr.PublicKey
		}
		if c, err = a.IssueDeviceFromCSR(csr, pki.DeviceRequest{DeviceID: opts.deviceID, PublicKey: pub, Lifetime: opts.lifetime}); err != nil {
			return err
		}
	} else if c, err = a.IssueDevice(pub, pki.DeviceOptions{DeviceID: opts.deviceID, Lifetime: opts.lifetime}); err != nil {
		return err
	}
	prefix := opts.out
	if prefix == "" {
		prefix = c.Leaf.Subject.CommonName
	}
	return saveIssued(w, c, prefix, opts.force)
}

func saveIssued(w io.Writer, c *pki.Certificate, prefix string, force bool) error {
	certPath, keyPath := prefix+".crt", ""
	if c.Key != nil {
		keyPath = prefix + ".key"
	}
	if err := pki.SaveCertificate(c, certPath, keyPath, force); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s", certPath)
	if keyPath != "" {
		fmt.Fprintf(w, " and %s", keyPath)
	}
	_, err := fmt.Fprintf(w, "\nsubject:   %s\nnot after: %s\n", c.Leaf.Subject, c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return err
}

// pkiKeygenOptions are the flags of `wasmbed pki keygen`.
type pkiKeygenOptions struct {
	algorithm string
	deviceID  string
	out       string
	force     bool
}

func newPKIKeygenCommand() *cobra.Command {
	opts := &pkiKeygenOptions{}
	cmd := &cobra.Command{
		Use:   "keygen --out PREFIX [--device-id ID]",
		Short: "Generate a device key pair (and optionally a signing request)",
		Long: `Keygen generates a key pair and writes PREFIX.key (PKCS#8, 0600) and
PREFIX.pub (PEM), and prints the public key in the form a Device's
spec.publicKey takes, for pre-registering a device. With --device-id it also
writes PREFIX.csr, a signing request for that id.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPKIKeygen(cmd.OutOrStdout(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.algorithm, "algorithm", string(pki.DefaultKeyAlgorithm), "key algorithm: ed25519 or ecdsa-p256")
	f.StringVar(&opts.deviceID, "device-id", "", "also write a certificate signing request for this device id")
	f.StringVar(&opts.out, "out", "", "output path prefix (required)")
	f.BoolVar(&opts.force, "force", false, "overwrite existing files")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func runPKIKeygen(w io.Writer, opts *pkiKeygenOptions) error {
	alg, err := pki.ParseKeyAlgorithm(opts.algorithm)
	if err != nil {
		return fmt.Errorf("--algorithm: %w", err)
	}
	key, err := pki.GenerateKey(alg)
	if err != nil {
		return err
	}
	keyPEM, err := pki.EncodePrivateKeyPEM(key)
	if err != nil {
		return err
	}
	pubPEM, err := pki.EncodePublicKeyPEM(key.Public())
	if err != nil {
		return err
	}
	type file struct {
		path string
		data []byte
		perm fs.FileMode
	}
	files := []file{
		{opts.out + ".key", keyPEM, pki.KeyFileMode},
		{opts.out + ".pub", pubPEM, pki.CertFileMode},
	}
	if opts.deviceID != "" {
		der, err := pki.NewDeviceCSR(key, opts.deviceID)
		if err != nil {
			return err
		}
		files = append(files, file{opts.out + ".csr", pki.EncodeCSRPEM(der), pki.CertFileMode})
	}
	// Refuse before writing anything.
	var paths []string
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil && !opts.force {
			return fmt.Errorf("write %s: %w (use --force to overwrite)", f.path, pki.ErrExists)
		}
		paths = append(paths, f.path)
	}
	for _, f := range files {
		if err := pki.WriteFile(f.path, f.data, f.perm, opts.force); err != nil {
			return err
		}
	}
	enc, err := pki.EncodePublicKey(key.Public())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "wrote %s\npublic key: %s\n", strings.Join(paths, ", "), enc)
	return err
}

// pkiInspectOptions are the flags of `wasmbed pki inspect`.
type pkiInspectOptions struct {
	file       string
	dir        string
	serverName string
}

func newPKIInspectCommand() *cobra.Command {
	opts := &pkiInspectOptions{}
	cmd := &cobra.Command{
		Use:   "inspect FILE [--dir DIR]",
		Short: "Describe a certificate, signing request or public key",
		Long: `Inspect prints the subject, issuer, validity, key algorithm, SANs, key usages
and public key fingerprint of the certificates in FILE (PEM, leaf first), or
describes a signing request or public key. With --dir it also verifies the
chain against that CA directory — as a device certificate, a gateway
certificate or a CA, according to the certificate — and fails if it does not
verify.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.file = args[0]
			return runPKIInspect(cmd, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.dir, "dir", "", "CA directory to verify the chain against")
	f.StringVar(&opts.serverName, "server-name", "", "also check a gateway certificate covers this DNS name or IP")
	return cmd
}

func runPKIInspect(cmd *cobra.Command, opts *pkiInspectOptions) error {
	w := cmd.OutOrStdout()
	data, err := pki.ReadFile(opts.file)
	if err != nil {
		return err
	}
	trimmed := bytes.TrimSpace(data)
	switch {
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN CERTIFICATE REQUEST-----")):
		return inspectCSR(w, data)
	case bytes.HasPrefix(trimmed, []byte("-----BEGIN PUBLIC KEY-----")), !bytes.HasPrefix(trimmed, []byte("-----BEGIN")):
		return inspectPublicKey(w, data)
	}
	certs, err := pki.ParseCertificatesPEM(data)
	if err != nil {
		return fmt.Errorf("%s: %w", opts.file, err)
	}
	now := time.Now()
	for i, c := range certs {
		if len(certs) > 1 {
			fmt.Fprintf(w, "--- certificate %d of %d\n", i+1, len(certs))
		}
		if err := pki.Inspect(c).WriteText(w); err != nil {
			return err
		}
		fmt.Fprintf(w, "%-17s %s\n", "status:", pki.ValidityStatus(c, now))
	}
	if opts.dir == "" {
		return nil
	}
	a, err := pki.LoadCA(opts.dir)
	if err != nil {
		return err
	}
	leaf := certs[0]
	kind := "CA"
	switch {
	case leaf.IsCA:
		var v *pki.Verifier
		if v, err = pki.NewVerifier(pki.VerifierConfig{Root: a.Root.Cert}); err == nil {
			err = v.VerifyCA(leaf)
		}
	case hasClientAuth(leaf):
		kind = "device"
		var v *pki.Verifier
		if v, err = a.DeviceVerifier(nil); err == nil {
			_, err = v.VerifyDevice(cmd.Context(), certs)
		}
	default:
		kind = "gateway"
		var v *pki.Verifier
		if v, err = a.GatewayVerifier(); err == nil {
			err = v.VerifyGateway(cmd.Context(), certs, opts.serverName)
		}
	}
	if err != nil {
		fmt.Fprintf(w, "chain:            FAILED (%s certificate): %v\n", kind, err)
		return fmt.Errorf("%s does not verify against %s: %w", opts.file, filepath.Clean(opts.dir), err)
	}
	_, err = fmt.Fprintf(w, "chain:            ok (%s certificate, issued under %q)\n", kind, a.Root.Cert.Subject.CommonName)
	return err
}

func inspectCSR(w io.Writer, data []byte) error {
	csr, err := pki.ParseCSR(data)
	if err != nil {
		return err
	}
	sig := "valid"
	if err := csr.CheckSignature(); err != nil {
		sig = "INVALID: " + err.Error()
	}
	fmt.Fprintf(w, "%-17s %s\n%-17s %s\n", "request subject:", csr.Subject, "signature:", sig)
	for _, u := range csr.URIs {
		fmt.Fprintf(w, "%-17s %s\n", "uri:", u)
	}
	if err := describeKey(w, csr.PublicKey); err != nil {
		return err
	}
	if sig != "valid" {
		return pki.ErrCSRSignature
	}
	return nil
}

func inspectPublicKey(w io.Writer, data []byte) error {
	pub, err := pki.ParsePublicKeyFile(data)
	if err != nil {
		return err
	}
	return describeKey(w, pub)
}

func describeKey(w io.Writer, pub any) error {
	fmt.Fprintf(w, "%-17s %s\n", "key algorithm:", pki.KeyAlgorithmName(pub))
	if err := pki.CheckPublicKey(pub); err != nil {
		return err
	}
	fp, err := pki.Fingerprint(pub)
	if err != nil {
		return err
	}
	enc, err := pki.EncodePublicKey(pub)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%-17s sha256:%s\n%-17s %s\n", "fingerprint:", fp, "public key:", enc)
	return err
}

func hasClientAuth(c *x509.Certificate) bool {
	return slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
}
