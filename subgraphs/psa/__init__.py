"""subgraphs/psa"""
