package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmbed/wasmbed/internal/fleetctl"
	"github.com/wasmbed/wasmbed/internal/pairing"
)

// PairingStatus is what the pairing commands print with -o json|yaml: the
// pairing window, a stable view of the wasmbed-pairing ConfigMap.
type PairingStatus struct {
	// Open is true while gateways accept enrollments.
	Open bool `json:"open"`
	// OpenUntil is when the window closes by itself.
	OpenUntil *time.Time `json:"openUntil,omitempty"`
	// OpenedAt is when the window was opened.
	OpenedAt *time.Time `json:"openedAt,omitempty"`
	// OpenedBy names who opened it.
	OpenedBy string `json:"openedBy,omitempty"`
	// TokenRequired is true when enrolling devices must present the
	// pairing token.
	TokenRequired bool `json:"tokenRequired"`
	// Token is the pairing token, printed once by the open that generated
	// it and stored only as a hash.
	Token string `json:"token,omitempty"`
}

func pairingStatus(w pairing.Window, now time.Time) PairingStatus {
	s := PairingStatus{Open: w.OpenAt(now), OpenedBy: w.OpenedBy}
	if !s.Open {
		return PairingStatus{}
	}
	s.TokenRequired = w.TokenRequired()
	if !w.OpenUntil.IsZero() {
		t := w.OpenUntil.UTC()
		s.OpenUntil = &t
	}
	if !w.OpenedAt.IsZero() {
		t := w.OpenedAt.UTC()
		s.OpenedAt = &t
	}
	return s
}

func printPairing(w io.Writer, s PairingStatus, now time.Time) {
	if !s.Open {
		fmt.Fprintln(w, "Pairing window: closed")
		return
	}
	fmt.Fprintf(w, "Pairing window:\topen until %s (%s left)\n", s.OpenUntil.Format(time.RFC3339), s.OpenUntil.Sub(now).Round(time.Second))
	if s.OpenedBy != "" {
		fmt.Fprintf(w, "Opened by:\t%s\n", s.OpenedBy)
	}
	if s.TokenRequired {
		fmt.Fprintf(w, "Token:\trequired\n")
	} else {
		fmt.Fprintf(w, "Token:\tnot required\n")
	}
	if s.Token != "" {
		fmt.Fprintf(w, "Pairing token:\t%s (shown once; give it to the devices: --pairing-token)\n", s.Token)
	}
}

func newPairingCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pairing",
		Short: "Open, close or show the window in which new devices may enroll",
		Long: `Pairing manages the pairing window: while it is open, gateways accept
enrollments of new devices and the controller signs their first certificates.
The window lives in the ConfigMap wasmbed-pairing of the system namespace,
which every gateway replica obeys.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newPairingOpenCommand(), newPairingCloseCommand(), newPairingStatusCommand())
	return cmd
}

func newPairingOpenCommand() *cobra.Command {
	var co *clusterOptions
	var d time.Duration
	var token bool
	cmd := &cobra.Command{
		Use:   "open [--duration D] [--token]",
		Short: "Open the pairing window",
		Long: `Open opens the pairing window for --duration (at most 24h), replacing any
window open now. With --token, enrolling devices must also present a pairing
token, generated now and printed once: only its hash is stored.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if d <= 0 || d > pairing.MaxDuration {
				return usagef("--duration %v: want more than 0s and at most %v, such as 15m", d, pairing.MaxDuration)
			}
			c, err := co.client()
			if err != nil {
				return err
			}
			var tok string
			if token {
				if tok, err = pairing.NewToken(); err != nil {
					return err
				}
			}
			now := time.Now()
			w, err := pairing.Open(now, d, co.userName(), []byte(tok))
			if err != nil {
				return usagef("--duration: %v", err)
			}
			if err := fleetctl.SetPairing(cmd.Context(), c, co.systemNamespace, w); err != nil {
				return clusterError(err, "the pairing window")
			}
			s := pairingStatus(w, now)
			s.Token = tok
			return co.print(cmd.OutOrStdout(), s, func(w io.Writer) { printPairing(w, s, now) })
		},
	}
	cmd.Flags().DurationVar(&d, "duration", pairing.DefaultDuration, "how long the window stays open (at most 24h)")
	cmd.Flags().BoolVar(&token, "token", false, "require a pairing token, generated and printed once")
	co = addClusterFlags(cmd, true)
	return cmd
}

func newPairingCloseCommand() *cobra.Command {
	var co *clusterOptions
	cmd := &cobra.Command{
		Use:   "close",
		Short: "Close the pairing window",
		Long:  `Close closes the pairing window now and forgets its token.`,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := co.client()
			if err != nil {
				return err
			}
			if err := fleetctl.SetPairing(cmd.Context(), c, co.systemNamespace, pairing.Window{}); err != nil {
				return clusterError(err, "the pairing window")
			}
			s := PairingStatus{}
			return co.print(cmd.OutOrStdout(), s, func(w io.Writer) { printPairing(w, s, time.Now()) })
		},
	}
	co = addClusterFlags(cmd, true)
	return cmd
}

func newPairingStatusCommand() *cobra.Command {
	var co *clusterOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether the pairing window is open",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := co.client()
			if err != nil {
				return err
			}
			w, err := fleetctl.Pairing(cmd.Context(), c, co.systemNamespace)
			if err != nil {
				return clusterError(err, "the pairing window")
			}
			now := time.Now()
			s := pairingStatus(w, now)
			return co.print(cmd.OutOrStdout(), s, func(w io.Writer) { printPairing(w, s, now) })
		},
	}
	co = addClusterFlags(cmd, true)
	return cmd
}
