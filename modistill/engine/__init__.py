"""modistill.engine"""
