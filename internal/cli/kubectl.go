package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"

	// Before any kubectl package initialises: no English catalogue load.
	_ "github.com/wasmbed/wasmbed/internal/cli/kubectli18n"
)

func newKubectlCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "kubectl [kubectl arguments]",
		Short: "Run kubectl against the embedded control plane",
		Long: `Kubectl runs the kubectl built into wasmbed. Unless --kubeconfig is given or
KUBECONFIG is set, it uses the admin kubeconfig of the data directory
($` + dataDirEnv + ` or the default data directory of ` + "`wasmbed up`" + `).`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			args = kubectlArgs(args, os.Getenv("KUBECONFIG"), defaultDataDir())
			kubectl := kubectlcmd.NewDefaultKubectlCommandWithArgs(kubectlcmd.KubectlOptions{
				PluginHandler: kubectlcmd.NewDefaultPluginHandler(nil),
				Arguments:     append([]string{"kubectl"}, args...),
				ConfigFlags:   genericclioptions.NewConfigFlags(true).WithDiscoveryBurst(300).WithDiscoveryQPS(50),
				IOStreams: genericiooptions.IOStreams{
					In: cmd.InOrStdin(), Out: cmd.OutOrStdout(), ErrOut: cmd.ErrOrStderr(),
				},
			})
			kubectl.SetArgs(args)
			return kubectl.ExecuteContext(cmd.Context())
		},
	}
}

// kubectlArgs adds --kubeconfig for the data directory unless the caller
// chose a kubeconfig already.
func kubectlArgs(args []string, kubeconfigEnv, dataDir string) []string {
	if kubeconfigEnv != "" || slices.ContainsFunc(args, func(a string) bool {
		return a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=")
	}) {
		return args
	}
	return append([]string{"--kubeconfig", filepath.Join(dataDir, "kubeconfig")}, args...)
}
