"""Studies built on robcurves' stages: each module runs one study and writes its page.

``tradeoff``: the accuracy/robustness trade-off of Tsipras et al. on their distribution.
"""
