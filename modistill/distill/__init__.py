"""modistill.distill"""
