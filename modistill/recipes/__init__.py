"""modistill.recipes"""
