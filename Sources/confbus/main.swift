print("confbus")
