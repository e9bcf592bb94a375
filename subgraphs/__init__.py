"""subgraphs"""
