// Kubeflow's training operator v1 (its controllers and validating webhooks, unchanged) for
// the side-by-side benchmark, started the way its own main starts them but with every
// listener on 127.0.0.1: the released binary's webhook server takes only a port and listens
// on all interfaces, which the test machines do not allow. Its certificate rotator is left
// out too: the benchmark hands it a serving certificate for 127.0.0.1 and registers the
// webhooks itself, so the API server calls them on every create, as in an installed cluster.
package main

import (
	"flag"
	"os"

	"go.uber.org/zap/zapcore"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	kubeflowv1 "github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1"
	"github.com/kubeflow/training-operator/pkg/config"
	controllerv1 "github.com/kubeflow/training-operator/pkg/controller.v1"
	"github.com/kubeflow/training-operator/pkg/controller.v1/common"
	"github.com/kubeflow/training-operator/pkg/webhooks"
)

func main() {
	metricsAddress := flag.String("metrics-bind-address", "127.0.0.1:8080", "address:port of the metrics endpoint")
	probeAddress := flag.String("health-probe-bind-address", "127.0.0.1:8081", "address:port of /healthz and /readyz")
	webhookPort := flag.Int("webhook-server-port", 9443, "port of the webhook server on 127.0.0.1")
	certDir := flag.String("webhook-cert-dir", "", "folder holding tls.crt and tls.key for 127.0.0.1")
	// The released operator's default: one reconcile worker per kind of job.
	threads := flag.Int("controller-threads", 1, "reconcile workers per kind of job")
	// The released operator's defaults for what its flags configure.
	config.Config.PyTorchInitContainerImage = config.PyTorchInitContainerImageDefault
	config.Config.PyTorchInitContainerTemplateFile = config.PyTorchInitContainerTemplateFileDefault
	config.Config.PyTorchInitContainerMaxTries = config.PyTorchInitContainerMaxTriesDefault
	config.Config.MPIKubectlDeliveryImage = config.MPIKubectlDeliveryImageDefault
	// Not a flag of the released operator: it keeps controller-runtime's client-side limit
	// of 20 requests/s (burst 30); a negative value lifts it, to see what the limit costs.
	qps := flag.Float64("kube-api-qps", 0, "client requests per second; 0 keeps the released default, <0 lifts the limit")
	flag.Parse()
	// Its logging too: development mode, stack traces from DPanic on.
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zap.Options{
		Development: true, StacktraceLevel: zapcore.DPanicLevel})))
	log := ctrl.Log.WithName("setup")

	scheme := clientgoscheme.Scheme
	utilruntime.Must(kubeflowv1.AddToScheme(scheme))
	restConfig := ctrl.GetConfigOrDie()
	if *qps < 0 {
		restConfig.QPS, restConfig.RateLimiter = -1, nil
	} else if *qps > 0 {
		restConfig.QPS, restConfig.Burst = float32(*qps), int(*qps*1.5)
	}
	manager, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: *metricsAddress},
		HealthProbeBindAddress: *probeAddress,
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: "127.0.0.1", Port: *webhookPort, CertDir: *certDir}),
	})
	if err != nil {
		log.Error(err, "unable to create the manager")
		os.Exit(1)
	}
	// Every kind of job, as the released operator enables by default.
	var schemes controllerv1.EnabledSchemes
	schemes.FillAll()
	for _, kind := range schemes {
		if err := controllerv1.SupportedSchemeReconciler[kind](
			manager, common.GenNonGangSchedulerSetupFunc(), *threads); err != nil {
			log.Error(err, "unable to set up the controller", "kind", kind)
			os.Exit(1)
		}
		if err := webhooks.SupportedSchemeWebhook[kind](manager); err != nil {
			log.Error(err, "unable to set up the webhook", "kind", kind)
			os.Exit(1)
		}
	}
	utilruntime.Must(manager.AddHealthzCheck("healthz", healthz.Ping))
	utilruntime.Must(manager.AddReadyzCheck("readyz", manager.GetWebhookServer().StartedChecker()))
	log.Info("starting manager")
	if err := manager.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}
