"""Exercise softmax_ce_backward: write the function below, then `minirobust exercises check softmax_ce_backward`
(lessons/README.md says more). A solution is in ../solutions/softmax_ce_backward.py: try first."""

import numpy as np


def softmax_ce_backward(logits, y):
    """Gradient of the mean softmax cross-entropy loss with respect to the logits.

    logits: (N, K) scores, y: (N,) integer labels in [0, K).
    loss = mean over n of -log(softmax(logits[n])[y[n]]).  Returns dlogits: (N, K).
    """
    # YOUR CODE HERE
    raise NotImplementedError("softmax_ce_backward: not written yet")
