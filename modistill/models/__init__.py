"""modistill.models"""
