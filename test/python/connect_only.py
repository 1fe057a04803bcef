"""Connect a client and ask the hub for its engines: the controller is up and answering."""
import json, sys
import ipyparallel as ipp

rc = ipp.Client(sys.argv[1], timeout=30)
print(json.dumps({"ids": rc.ids}))
rc.close()
