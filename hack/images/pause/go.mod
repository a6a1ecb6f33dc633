module aidp.local/pause

go 1.26
