"""Reports of the CIFAR ResNet baselines."""
from pipelines.report.engine import ReportDefinition, register_report

register_report(ReportDefinition(
    name="cifar-resnet-cifar10",
    title="CIFAR-10 ResNets (option A): test accuracy %",
    space="cifar-resnet-cifar10.yaml",
    # He et al. 2016, Table 6: 100 - test error (ResNet-110: the mean of 5 runs).
    published={"ResNet-20": 91.25, "ResNet-32": 92.49, "ResNet-44": 92.83, "ResNet-56": 93.03, "ResNet-110": 93.39},
    published_source="He et al., Deep Residual Learning for Image Recognition, 2016, Table 6",
))

register_report(ReportDefinition(
    name="cifar-resnet-fashion-mnist",
    title="Fashion-MNIST, the demo recipe: test accuracy %",
    space="cifar-resnet-fashion-mnist.yaml",
))
