package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fleetctl"
)

// devicePhase is a device's phase for people: Pending before anything was
// observed, with ",Revoked" added for a revoked device (as kubectl shows a
// cordoned node "Ready,SchedulingDisabled").
func devicePhase(d *wasmbedv1.Device) string {
	p := string(d.Status.Phase)
	if p == "" {
		p = string(wasmbedv1.DevicePhasePending)
	}
	if d.Spec.Revoked {
		p += ",Revoked"
	}
	return p
}

func deviceList(items []wasmbedv1.Device) *wasmbedv1.DeviceList {
	l := &wasmbedv1.DeviceList{Items: make([]wasmbedv1.Device, len(items))}
	l.APIVersion, l.Kind = wasmbedv1.GroupVersion.String(), "DeviceList"
	for i := range items {
		l.Items[i] = *printable(&items[i], "Device")
	}
	return l
}

func newDeviceListCommand() *cobra.Command {
	var co *clusterOptions
	var selector string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the devices of the namespace",
		Long: `List prints the Devices of the namespace: board type, phase (",Revoked" added
for a revoked device), the gateway holding its session, when it was last seen
and its age. --selector filters by label. -o json or yaml prints the
DeviceList, as Kubernetes stores it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := []client.ListOption{}
			if selector != "" {
				sel, err := labels.Parse(selector)
				if err != nil {
					return usagef("--selector %q: %v", selector, err)
				}
				opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
			}
			c, err := co.client()
			if err != nil {
				return err
			}
			var list wasmbedv1.DeviceList
			if err := c.List(cmd.Context(), &list, append(opts, client.InNamespace(co.namespace))...); err != nil {
				return clusterError(err, "devices")
			}
			slices.SortFunc(list.Items, func(a, b wasmbedv1.Device) int { return strings.Compare(a.Name, b.Name) })
			if len(list.Items) == 0 && !co.scripted() {
				fmt.Fprintf(cmd.OutOrStdout(), "No devices in namespace %s.\n", co.namespace)
				return nil
			}
			now := time.Now()
			return co.print(cmd.OutOrStdout(), deviceList(list.Items), func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tTYPE\tPHASE\tGATEWAY\tLAST SEEN\tAGE")
				for i := range list.Items {
					d := &list.Items[i]
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Spec.DeviceType, devicePhase(d),
						orDash(d.Status.Gateway), age(now, metaTime(d.Status.LastSeen)), age(now, &d.CreationTimestamp.Time))
				}
			})
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector, e.g. wasmbed.github.io/device-type=esp32")
	co = addClusterFlags(cmd, true)
	return cmd
}

func metaTime(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	return &t.Time
}

func newDeviceDescribeCommand() *cobra.Command {
	var co *clusterOptions
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a device: identity, session, firmware, conditions and applications",
		Long: `Describe prints a Device: its identity and board, whether it is revoked, its
session (phase, gateway, since when, last seen), firmware, certificate expiry,
labels, conditions, and the applications assigned to it with their phase on
it. -o json or yaml prints the Device as Kubernetes stores it.`,
		Args: nameArg("device"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: co.namespace, Name: args[0]}
			d := &wasmbedv1.Device{}
			if err := c.Get(cmd.Context(), key, d); err != nil {
				return clusterError(err, "device "+key.String())
			}
			if co.scripted() {
				return co.print(cmd.OutOrStdout(), printable(d, "Device"), nil)
			}
			var list wasmbedv1.DeviceApplicationList
			if err := c.List(cmd.Context(), &list, client.InNamespace(key.Namespace),
				client.MatchingLabels{wasmbedv1.LabelDevice: wasmbedv1.LabelValue(key.Name)}); err != nil {
				return clusterError(err, "the applications of device "+key.String())
			}
			das := slices.DeleteFunc(list.Items, func(da wasmbedv1.DeviceApplication) bool { return da.Spec.Device != key.Name })
			slices.SortFunc(das, func(a, b wasmbedv1.DeviceApplication) int {
				return strings.Compare(a.Spec.Application, b.Spec.Application)
			})
			return co.print(cmd.OutOrStdout(), nil, func(w io.Writer) { printDevice(w, d, das, time.Now()) })
		},
	}
	co = addClusterFlags(cmd, true)
	return cmd
}

func printDevice(w io.Writer, d *wasmbedv1.Device, das []wasmbedv1.DeviceApplication, now time.Time) {
	st := d.Status
	fmt.Fprintf(w, "Name:\t%s\n", d.Name)
	fmt.Fprintf(w, "Namespace:\t%s\n", d.Namespace)
	fmt.Fprintf(w, "Device ID:\t%s\n", d.Spec.DeviceID)
	fmt.Fprintf(w, "Type:\t%s\n", d.Spec.DeviceType)
	caps := make([]string, len(d.Spec.Capabilities))
	for i, c := range d.Spec.Capabilities {
		caps[i] = string(c)
	}
	fmt.Fprintf(w, "Capabilities:\t%s\n", orDash(strings.Join(caps, ", ")))
	fmt.Fprintf(w, "Revoked:\t%t\n", d.Spec.Revoked)
	fmt.Fprintf(w, "Phase:\t%s\n", devicePhase(d))
	fmt.Fprintf(w, "Gateway:\t%s\n", orDash(st.Gateway))
	if st.ConnectedSince != nil {
		fmt.Fprintf(w, "Connected since:\t%s (%s)\n", st.ConnectedSince.UTC().Format(time.RFC3339), age(now, &st.ConnectedSince.Time))
	}
	if st.LastSeen != nil {
		fmt.Fprintf(w, "Last seen:\t%s (%s ago)\n", st.LastSeen.UTC().Format(time.RFC3339), age(now, &st.LastSeen.Time))
	}
	if fw := st.Firmware; fw != nil {
		fmt.Fprintf(w, "Firmware:\t%s, runtime %s, protocol %d\n", orDash(fw.Version), orDash(fw.Runtime), fw.ProtocolVersion)
	}
	if st.CertificateNotAfter != nil {
		fmt.Fprintf(w, "Certificate expires:\t%s\n", st.CertificateNotAfter.UTC().Format(time.RFC3339))
	}
	keys := make([]string, 0, len(d.Labels))
	for k, v := range d.Labels {
		keys = append(keys, k+"="+v)
	}
	slices.Sort(keys)
	fmt.Fprintf(w, "Labels:\t%s\n", orDash(strings.Join(keys, ", ")))
	fmt.Fprintf(w, "Conditions:\n")
	if len(st.Conditions) == 0 {
		fmt.Fprintf(w, "  none\n")
	}
	for _, c := range st.Conditions {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, oneLine(c.Message))
	}
	fmt.Fprintf(w, "Applications:\n")
	if len(das) == 0 {
		fmt.Fprintf(w, "  none\n")
	}
	for _, da := range das {
		p := da.Status.Phase
		if p == "" {
			p = wasmbedv1.DeviceApplicationPhasePending
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", da.Spec.Application, p, orDash(da.Status.Version), oneLine(strings.TrimSpace(da.Status.Reason+" "+da.Status.Message)))
	}
}

func newDeviceRevokeCommand() *cobra.Command {
	var co *clusterOptions
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a device: its session is closed and its certificates refused",
		Long: `Revoke sets the Device's spec.revoked: the gateway holding its session closes
it, and every gateway refuses its certificates from then on. The Device stays,
so that its history and identity remain visible; delete it with kubectl to
forget it.`,
		Args: nameArg("device"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: co.namespace, Name: args[0]}
			d, err := fleetctl.RevokeDevice(cmd.Context(), c, key)
			if err != nil {
				return clusterError(err, "device "+key.String())
			}
			if co.scripted() {
				return co.print(cmd.OutOrStdout(), printable(d, "Device"), nil)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "device %s revoked\n", key)
			return nil
		},
	}
	co = addClusterFlags(cmd, true)
	return cmd
}
