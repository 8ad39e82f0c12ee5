"""The stock-style baseline: what following TorchServe's image-classifier example gives for this model.

TorchServe's own ``ImageClassifier`` (PIL decode of the full image per request, torchvision
transforms, fp32, top-k JSON), with only the transforms changed to fit the model's 32×32 uint8 input.
The benchmark serves the same TorchScript artifact with it, batch size 1 (loadtest/sweep.py).
"""

from torchvision import transforms
from ts.torch_handler.image_classifier import ImageClassifier


class StockStyleClassifier(ImageClassifier):
    topk = 2
    image_processing = transforms.Compose([transforms.Resize((32, 32)), transforms.PILToTensor()])
