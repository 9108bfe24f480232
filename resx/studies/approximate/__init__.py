"""The approximation study (Lin & Jegelka 2018, "ResNet with one-neuron hidden layers is a Universal Approximator"):
narrow fully connected ReLU nets against the one-neuron ResNet on 2-D tasks, with the boundedness of each trained net's
class-1 region measured far outside the data. `resx approximate`; see study.py for its layers."""
